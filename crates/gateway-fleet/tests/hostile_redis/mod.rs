//! Values in Redis that no replica writes (another type, no expiry or a far one, text
//! where a number goes, a token no bearer token looks like): the fleet passes over them
//! or writes over them, stays joined (not degraded), and no model or call is held back
//! longer than a replica's own bound. Against a real `redis-server` and the simulator.

use std::time::Duration;

use crate::support::{
    RedisServer, fleet_config, fleet_router_config, redis_and_sim, replica, router_config,
};
use gateway_model::{RouteConfig, RouteRequest, RouterConfig};
use gateway_router::Router;
use gateway_sim::{Behaviour, PolicyRule, SimHandle};
use redis::AsyncCommands;

/// Ten years, in milliseconds.
const TEN_YEARS_MS: u64 = 10 * 365 * 24 * 3_600_000;

/// A config whose routes fall back to `model-fallback-3`, with one attempt per model and
/// circuits that open after two failures for one second (the longest opening, as
/// `max_retry_after_s` is one second too).
fn circuit_config(sim: &SimHandle, prefix: &str) -> RouterConfig {
    let mut config = router_config(sim);
    for (route, model) in [("reply", "model-gen-4"), ("other", "model-gen-5")] {
        let mut chain = RouteConfig::to_model(model);
        chain.fallbacks = vec!["model-fallback-3".into()];
        config.routes.insert(route.into(), chain);
    }
    config.retry.max_attempts = 1;
    config.retry.max_retry_after_s = 1;
    config.circuit_breaker.failure_threshold = 2;
    config.circuit_breaker.cooldown_ms = 1_000;
    config.fleet = Some(fleet_config(prefix, 2));
    config
}

/// The model that served one call of `route` with `prompt`.
async fn served(router: &Router, route: &str, prompt: &str) -> String {
    let outcome = router
        .route(RouteRequest::new(route, prompt))
        .await
        .expect("the call succeeds");
    outcome.served_model.as_str().to_owned()
}

/// Waits (at most ten seconds: a loaded machine delays Redis' expiries and our polls)
/// until `key` is gone from Redis.
async fn until_gone(redis: &RedisServer, key: &str) {
    let mut connection = redis.connection().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        let exists: bool = connection.exists(key).await.unwrap();
        if !exists {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{key} is still in Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_opening_longer_than_any_replica_makes_is_cut_to_the_longest() {
    let Some((redis, sim)) = redis_and_sim().await else {
        return;
    };
    let config = circuit_config(&sim, "far-circuit");
    let mut connection = redis.connection().await;
    let far = "far-circuit:circuit:model-gen-4";
    let endless = "far-circuit:circuit:model-gen-5";
    let () = connection.pset_ex(far, "1", TEN_YEARS_MS).await.unwrap();
    let () = connection.set(endless, "1").await.unwrap();
    let (router, fleet) = replica(&config, &redis.url()).await;

    // Both circuits read open, and both openings are cut to the longest a replica makes.
    assert_eq!(served(&router, "reply", "a").await, "model-fallback-3");
    assert_eq!(served(&router, "other", "a").await, "model-fallback-3");
    for key in [far, endless] {
        let left: i64 = connection.pttl(key).await.unwrap();
        assert!((1..=1_000).contains(&left), "{key}: {left} ms left");
    }
    // Once that has passed, the probe goes to each model, and its success closes it.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(served(&router, "reply", "b").await, "model-gen-4");
    assert_eq!(served(&router, "other", "b").await, "model-gen-5");
    assert_eq!(served(&router, "reply", "c").await, "model-gen-4");
    assert!(!fleet.is_degraded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_that_ends_without_a_verdict_frees_the_fleets_claim_at_once() {
    let Some((redis, sim)) = redis_and_sim().await else {
        return;
    };
    let config = circuit_config(&sim, "probe-free");
    let (router, _fleet) = replica(&config, &redis.url()).await;
    let probe = "probe-free:probe:model-gen-4";

    // Two failures open the circuit.
    sim.set_model_behaviour("model-gen-4", Behaviour::failing(503));
    for prompt in ["a", "b"] {
        assert_eq!(served(&router, "reply", prompt).await, "model-fallback-3");
    }
    // After the cool-down the probe is refused by a policy rule: no verdict on the
    // model's health. The fleet's claim goes with it, so the next call probes again
    // (rather than every replica skipping the model until the claim's lease of a
    // call's deadline lapses).
    sim.set_model_behaviour(
        "model-gen-4",
        Behaviour {
            policy_rules: vec![PolicyRule {
                contains: "forbidden".into(),
                code: None,
            }],
            ..Behaviour::default()
        },
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        served(&router, "reply", "forbidden").await,
        "model-fallback-3"
    );
    until_gone(&redis, probe).await;
    assert_eq!(served(&router, "reply", "c").await, "model-gen-4");

    // A probe whose call is dropped mid-flight frees the claim too.
    sim.set_model_behaviour("model-gen-4", Behaviour::failing(503));
    for prompt in ["d", "e"] {
        assert_eq!(served(&router, "reply", prompt).await, "model-fallback-3");
    }
    sim.set_model_behaviour("model-gen-4", Behaviour::default());
    sim.script(
        gateway_sim::Target::Model("model-gen-4".into()),
        [gateway_sim::Scripted::Stall],
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let probing = router.clone();
    let call = tokio::spawn(async move { probing.route(RouteRequest::new("reply", "f")).await });
    // Dropped once the probe is at the gateway (which never answers it).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sim.counters().prompts_in_flight != 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        sim.counters().prompts_in_flight,
        1,
        "the probe reached the gateway"
    );
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    until_gone(&redis, probe).await;
    assert_eq!(served(&router, "reply", "g").await, "model-gen-4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_cell_holding_what_no_replica_writes_is_written_over() {
    let Some((redis, sim)) = redis_and_sim().await else {
        return;
    };
    let mut config = router_config(&sim);
    config.limits.requests_per_minute = Some(600);
    config.limits.rate_burst = 10;
    config.fleet = Some(fleet_config("bad-rate", 2));
    let (router, fleet) = replica(&config, &redis.url()).await;
    let mut connection = redis.connection().await;
    let key = "bad-rate:rate";
    let far_future_micros = (TEN_YEARS_MS * 1_000 + 1_800_000_000_000_000).to_string();
    for value in [
        "1e30",
        "inf",
        "-inf",
        "nan",
        "abc",
        far_future_micros.as_str(),
    ] {
        let () = connection.set(key, value).await.unwrap();
        for n in 0..3 {
            let request = RouteRequest::new("reply", format!("{value} {n}"));
            let outcome = router.route(request).await;
            assert!(outcome.is_ok(), "with {value:?} in the cell: {outcome:?}");
        }
        assert!(!fleet.is_degraded(), "with {value:?} in the cell");
    }
    let _: i64 = connection.del(key).await.unwrap();
    let _: i64 = connection.hset(key, "field", "1").await.unwrap();
    assert!(
        router
            .route(RouteRequest::new("reply", "hash"))
            .await
            .is_ok()
    );
    assert!(!fleet.is_degraded(), "with a hash in the cell");
    let written: String = connection.get(key).await.unwrap();
    assert!(written.parse::<u64>().is_ok(), "{written}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_lock_without_an_expiry_lapses_within_token_lock_ms() {
    let Some((redis, sim)) = redis_and_sim().await else {
        return;
    };
    let mut connection = redis.connection().await;
    for (prefix, hash) in [("lock-string", false), ("lock-hash", true)] {
        // Bounds a loaded machine's Redis and login keep within (a command past its
        // timeout would mark the fleet degraded), and a lock lease that fits them.
        let mut config = router_config(&sim);
        config.limits.login_timeout_ms = 500;
        config.fleet = Some(gateway_model::FleetConfig {
            token_lock_ms: 2_100,
            command_timeout_ms: 800,
            ..fleet_config(prefix, 2)
        });
        let lock = format!("{prefix}:token:lock");
        if hash {
            let _: i64 = connection.hset(&lock, "held", "1").await.unwrap();
        } else {
            let () = connection.set(&lock, "held").await.unwrap();
        }
        let (router, fleet) = replica(&config, &redis.url()).await;
        // The first call waits for the lock as long as a lock lasts, then goes on with a
        // token of its own; meanwhile the lock's missing expiry was cut to that.
        assert!(router.route(RouteRequest::new("reply", "a")).await.is_ok());
        let left: i64 = connection.pttl(&lock).await.unwrap();
        assert!(
            left == -2 || (0..=2_100).contains(&left),
            "{prefix}: {left}"
        );
        until_gone(&redis, &lock).await;
        // The next call takes the lapsed lock and shares its token with the fleet.
        assert!(router.route(RouteRequest::new("reply", "b")).await.is_ok());
        let shared: Option<String> = connection.get(format!("{prefix}:token")).await.unwrap();
        assert!(shared.is_some_and(|t| t.starts_with("sim-")), "{prefix}");
        assert!(!fleet.is_degraded(), "{prefix}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_key_holding_what_no_replica_writes_is_passed_over() {
    let Some((redis, sim)) = redis_and_sim().await else {
        return;
    };
    let mut connection = redis.connection().await;
    let long = "t"
        .repeat(gateway_transport::MAX_ACCESS_TOKEN_BYTES + 1)
        .into_bytes();
    let bad: [(&str, Vec<u8>); 3] = [
        ("token-long", long),
        ("token-accented", "tökén".as_bytes().to_vec()),
        ("token-binary", vec![0xff, 0xfe, b'x']),
    ];
    for (prefix, value) in bad {
        let key = format!("{prefix}:token");
        let () = connection.pset_ex(&key, value, TEN_YEARS_MS).await.unwrap();
        token_passed_over(&sim, &redis, prefix).await;
    }
    let _: i64 = connection
        .hset("token-hash:token", "field", "1")
        .await
        .unwrap();
    token_passed_over(&sim, &redis, "token-hash").await;
}

/// A replica under `prefix` calls with a token of its own fetching, stays joined, and
/// shares that token (written over what was in the key).
async fn token_passed_over(sim: &SimHandle, redis: &RedisServer, prefix: &str) {
    let config = fleet_router_config(sim, prefix, 2);
    let (router, fleet) = replica(&config, &redis.url()).await;
    let requests = sim.counters().token_requests;
    assert!(
        router.route(RouteRequest::new("reply", "a")).await.is_ok(),
        "{prefix}"
    );
    assert_eq!(sim.counters().token_requests, requests + 1, "{prefix}");
    assert!(!fleet.is_degraded(), "{prefix}");
    let shared: Option<String> = redis
        .connection()
        .await
        .get(format!("{prefix}:token"))
        .await
        .unwrap();
    assert!(shared.is_some_and(|t| t.starts_with("sim-")), "{prefix}");
}
