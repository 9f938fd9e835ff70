//! Fleet mode against a real `redis-server` and the simulator: replicas share one token
//! and one rate budget, and keep working on local state while Redis is down; values in
//! Redis that no replica writes are passed over (`hostile_redis`).

mod hostile_redis;
mod support;

use std::time::Duration;

use gateway_model::FleetConfig;
use gateway_sim::{RateLimit, RetryAfterStyle, Scripted, Sim, SimHandle, Target};
use support::{
    RedisServer, fleet_config, fleet_router_config, load, redis_and_sim, replica, router_config,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_cold_starting_together_fetch_one_token() {
    let Some((redis, sim)) = redis_and_sim().await else {
        return;
    };
    let config = fleet_router_config(&sim, "one-token", 3);
    let mut routers = Vec::new();
    let mut fleets = Vec::new();
    for _ in 0..3 {
        let (router, fleet) = replica(&config, &redis.url()).await;
        routers.push(router);
        fleets.push(fleet);
    }

    let results = load(&routers, 334).await;
    assert_eq!(results.len(), 1_002);
    assert!(results.iter().all(Result::is_ok), "every call succeeds");
    assert!(fleets.iter().all(|f| !f.is_degraded()), "{fleets:?}");
    assert_eq!(sim.counters().token_requests, 1, "one token for the fleet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_calls_go_on_locally_and_the_fleet_rejoins_when_it_is_back() {
    let Some((mut redis, sim)) = redis_and_sim().await else {
        return;
    };
    let mut config = router_config(&sim);
    config.limits.deadline_ms = 5_000;
    config.limits.attempt_timeout_ms = 5_000;
    config.limits.attempt_timeout_ms = 2_000;
    // A rate budget, so every attempt asks Redis for a slot.
    config.limits.requests_per_minute = Some(60_000);
    config.limits.rate_burst = 50;
    // A command timeout well within the deadline, so no call waits long on a dead Redis
    // (a killed Redis refuses at once anyway), yet one a loaded machine's live Redis
    // keeps, so the fleet is not marked degraded while Redis is up.
    config.fleet = Some(FleetConfig {
        command_timeout_ms: 1_000,
        ..fleet_config("redis-down", 2)
    });
    let metrics = gateway_telemetry::LocalMetrics::new();
    let fleet_a = metrics.scope(|| support::fleet(&config, &redis.url()));
    let a = support::replica_of(&config, &fleet_a).await;
    let (b, fleet_b) = replica(&config, &redis.url()).await;
    let routers = [a, b];

    assert!(load(&routers, 20).await.iter().all(Result::is_ok));
    assert_eq!(sim.counters().token_requests, 1);
    assert!(!fleet_a.is_degraded());

    // Redis dies in the middle of a load.
    let running = {
        let routers = routers.clone();
        tokio::spawn(async move { load(&routers, 100).await })
    };
    let before = sim.counters().prompt_requests;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sim.counters().prompt_requests < before + 20 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(
        sim.counters().prompt_requests >= before + 20,
        "the load is running"
    );
    redis.kill();
    let during = running.await.expect("no call panics");
    assert_eq!(during.len(), 200);
    let deadline = Duration::from_millis(config.limits.deadline_ms);
    for result in &during {
        let outcome = result
            .as_ref()
            .expect("calls keep succeeding without Redis");
        assert!(
            Duration::from_micros(outcome.latency_us) < deadline,
            "no call waits past its deadline"
        );
    }
    // The next call notices, if the load ended before it did.
    assert!(load(&routers, 1).await.iter().all(Result::is_ok));
    assert!(fleet_a.is_degraded());
    assert!(
        metrics
            .handle()
            .render()
            .contains("genesys_router_fleet_degraded 1"),
        "{}",
        metrics.handle().render()
    );

    redis.restart();
    // A degraded replica tries Redis again once a second: call until both are back.
    let mut rejoined = false;
    for _ in 0..100 {
        assert!(load(&routers, 1).await.iter().all(Result::is_ok));
        if !fleet_a.is_degraded() && !fleet_b.is_degraded() {
            rejoined = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rejoined, "both replicas rejoin the fleet");
    assert!(
        metrics
            .handle()
            .render()
            .contains("genesys_router_fleet_degraded 0")
    );
    // The token is shared again: both replicas send the same one.
    sim.reset();
    assert!(load(&routers, 5).await.iter().all(Result::is_ok));
    let bearers: std::collections::BTreeSet<String> = sim
        .prompt_requests()
        .iter()
        .filter_map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    assert_eq!(bearers.len(), 1, "one token again");
}

/// The simulator's client limit: `ALLOWED` calls per `WINDOW` seconds.
const ALLOWED: u32 = 20;
const WINDOW: u64 = 2;
/// The fleet's pace, 6 a second with a burst of 2: in any 2 s at most 2 × 6 + 2 + 1 = 15
/// calls go, under the limit of 20. The five to spare are for a loaded machine: a slot
/// is taken before the call's token, so calls whose slots pass during a slow first login
/// or a stalled process reach the gateway together (a stall of up to about 0.8 s fits).
const PER_MINUTE: u32 = 360;
const BURST: u32 = 2;

async fn limited_sim() -> SimHandle {
    Sim::builder()
        .client_rate_limit(RateLimit {
            allowed: ALLOWED,
            window_secs: WINDOW,
            retry_after: RetryAfterStyle::Seconds,
        })
        .start()
        .await
        .unwrap()
}

fn paced_config(sim: &SimHandle) -> gateway_model::RouterConfig {
    let mut config = router_config(sim);
    config.limits.requests_per_minute = Some(PER_MINUTE);
    config.limits.rate_burst = BURST;
    config.limits.deadline_ms = 30_000;
    config.limits.attempt_timeout_ms = 5_000;
    config
}

/// The most prompt calls the simulator received in any `WINDOW` seconds.
fn busiest_window(sim: &SimHandle) -> usize {
    let at: Vec<f64> = sim.prompt_requests().iter().map(|r| r.at_ms).collect();
    let window_ms = Duration::from_secs(WINDOW).as_secs_f64() * 1_000.0;
    (0..at.len())
        .map(|i| at[i..].iter().filter(|t| **t - at[i] < window_ms).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_offered_three_times_the_limit_keep_one_pace_and_see_no_429() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let sim = limited_sim().await;
    let mut config = paced_config(&sim);
    config.fleet = Some(fleet_config("one-pace", 3));
    let mut routers = Vec::new();
    for _ in 0..3 {
        routers.push(replica(&config, &redis.url()).await.0);
    }

    let per_router = usize::try_from(ALLOWED).unwrap();
    let results = load(&routers, per_router).await;
    assert!(
        results.iter().all(Result::is_ok),
        "every call succeeds, paced"
    );
    let counters = sim.counters();
    assert_eq!(counters.client_rate_limited, 0, "no upstream 429");
    assert_eq!(counters.prompt_successes, 3 * u64::from(ALLOWED));
    let busiest = busiest_window(&sim);
    assert!(
        busiest <= usize::try_from(ALLOWED).unwrap(),
        "{busiest} calls in one {WINDOW} s window, limit {ALLOWED}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_fleet_each_replica_paces_alone_and_the_client_limit_answers_429() {
    let sim = limited_sim().await;
    let mut config = paced_config(&sim);
    config.retry.max_attempts = 1;
    let mut routers = Vec::new();
    for _ in 0..3 {
        routers.push(support::solo(&config).await);
    }
    let per_router = usize::try_from(ALLOWED).unwrap();
    let _ = load(&routers, per_router).await;
    assert!(
        sim.counters().client_rate_limited > 0,
        "three replicas at the full pace each overrun the client's limit"
    );
}

/// Prompt calls the simulator received for `model`.
fn calls_to(sim: &SimHandle, model: &str) -> usize {
    sim.prompt_requests()
        .iter()
        .filter(|r| r.json().is_some_and(|p| p["modelId"] == model))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_opened_at_one_replica_is_open_at_all_and_one_probe_goes_after_the_cool_down() {
    let Some((redis, sim)) = redis_and_sim().await else {
        return;
    };
    let mut config = router_config(&sim);
    let mut route = gateway_model::RouteConfig::to_model("model-gen-4");
    route.fallbacks = vec!["model-fallback-3".into()];
    config.routes.insert("reply".into(), route);
    config.retry.max_attempts = 1;
    config.circuit_breaker.failure_threshold = 2;
    config.circuit_breaker.cooldown_ms = 1_000;
    config.fleet = Some(fleet_config("circuits", 3));
    let mut routers = Vec::new();
    for _ in 0..3 {
        routers.push(replica(&config, &redis.url()).await.0);
    }

    // The others read the circuit closed and call the model.
    assert!(load(&routers[1..], 1).await.iter().all(Result::is_ok));
    assert_eq!(calls_to(&sim, "model-gen-4"), 2);

    // Two failures at the first replica open its circuit.
    sim.set_model_behaviour("model-gen-4", gateway_sim::Behaviour::failing(503));
    assert!(load(&routers[..1], 1).await.iter().all(Result::is_ok));
    assert!(load(&routers[..1], 1).await.iter().all(Result::is_ok));
    assert_eq!(calls_to(&sim, "model-gen-4"), 4);
    // Once their readings are older than a replica trusts one (2 ms), the others skip
    // the model, straight to the fallback.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let others = load(&routers[1..], 5).await;
    assert!(others.iter().all(|r| {
        r.as_ref()
            .is_ok_and(|o| o.served_model.as_str() == "model-fallback-3")
    }));
    assert_eq!(
        calls_to(&sim, "model-gen-4"),
        4,
        "no replica calls a model whose circuit is open"
    );

    // After the cool-down (a real second: the circuit's expiry is Redis' own clock),
    // every replica wants to probe; exactly one does, and its failure reopens the circuit.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let after = load(&routers, 10).await;
    assert!(after.iter().all(Result::is_ok));
    assert_eq!(
        calls_to(&sim, "model-gen-4"),
        5,
        "exactly one probe for the fleet"
    );
    let again = load(&routers, 5).await;
    assert!(again.iter().all(Result::is_ok));
    assert_eq!(
        calls_to(&sim, "model-gen-4"),
        5,
        "the failed probe reopened it everywhere"
    );
}

/// A probe claim frees only itself: a release from a probe of the same replica that is
/// not the one holding the claim (a late probe, or a claim never granted) leaves the
/// claim in place, so no other replica probes meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_claim_is_freed_by_its_own_release_only() {
    let Some((redis, sim)) = redis_and_sim().await else {
        return;
    };
    let config = fleet_router_config(&sim, "claims", 2);
    let longest = config.longest_circuit_opening();
    let a = support::fleet(&config, &redis.url()).circuits(longest);
    let b = support::fleet(&config, &redis.url()).circuits(longest);

    assert!(a.claim_probe("m", 1).await);
    assert!(
        !a.claim_probe("m", 2).await,
        "one claim, on one replica too"
    );
    assert!(!b.claim_probe("m", 1).await, "nor at another replica");
    a.released("m", 2).await;
    assert!(
        !b.claim_probe("m", 7).await,
        "claim 2 was never A's to free"
    );
    a.released("m", 1).await;
    assert!(b.claim_probe("m", 7).await, "freed by its own release");
    a.released("m", 1).await;
    assert!(
        !a.claim_probe("m", 3).await,
        "a late release leaves B's claim alone"
    );
}

/// Regression: an opening was a plain `SET`, so a replica's short cool-down cut another
/// replica's longer opening (a long `Retry-After`) short. An opening now stands until the
/// longest one made ends; one longer than any replica makes is still cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_opening_at_one_replica_does_not_cut_a_longer_one_short() {
    use redis::AsyncCommands as _;
    let Some((redis, sim)) = redis_and_sim().await else {
        return;
    };
    let config = fleet_router_config(&sim, "longer-stands", 2);
    let longest = Duration::from_secs(60);
    let a = support::fleet(&config, &redis.url()).circuits(longest);
    let b = support::fleet(&config, &redis.url()).circuits(longest);
    let (circuit, probe) = ("longer-stands:circuit:m", "longer-stands:probe:m");
    let mut connection = redis.connection().await;

    a.opened("m", Duration::from_secs(30)).await;
    assert!(!b.claim_probe("m", 1).await, "open: no probe");
    let () = connection.set(probe, "a claim").await.unwrap();
    b.opened("m", Duration::from_secs(1)).await;
    let left: i64 = connection.pttl(circuit).await.unwrap();
    assert!(left > 20_000, "the 30 s opening stands: {left} ms left");
    let exists: bool = connection.exists(probe).await.unwrap();
    assert!(!exists, "an opening frees the probe either way");
    let seen = b.open_for("m").await.expect("open");
    assert!(seen > Duration::from_secs(20), "{seen:?}");

    // An opening longer than any replica makes is not kept by a shorter one.
    let () = connection
        .pset_ex(circuit, "1", 10 * 365 * 24 * 3_600_000)
        .await
        .unwrap();
    b.opened("m", Duration::from_secs(1)).await;
    let left: i64 = connection.pttl(circuit).await.unwrap();
    assert!((1..=1_000).contains(&left), "{left} ms left");
}

/// Regression: a replica whose circuit closed (its probe, or a late success) deleted the
/// fleet's circuit and probe whoever had set them, so another replica's longer opening
/// (a `Retry-After` it saw) ended at once, and another replica's probe claim was freed
/// for a second probe. A close now ends only the closing replica's own opening, and
/// frees only its own claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_closes_only_its_own_opening() {
    use redis::AsyncCommands as _;
    let Some((redis, sim)) = redis_and_sim().await else {
        return;
    };
    let config = fleet_router_config(&sim, "own-close", 2);
    let longest = Duration::from_secs(60);
    let a = support::fleet(&config, &redis.url()).circuits(longest);
    let b = support::fleet(&config, &redis.url()).circuits(longest);
    let circuit = "own-close:circuit:m";
    let mut connection = redis.connection().await;

    a.opened("m", Duration::from_secs(30)).await;
    b.closed("m").await;
    let left: i64 = connection.pttl(circuit).await.unwrap();
    assert!(left > 20_000, "A's opening stands: {left} ms left");
    a.closed("m").await;
    let exists: bool = connection.exists(circuit).await.unwrap();
    assert!(!exists, "A's own close ends it");

    // B extends A's opening: it is B's now, for A's close too.
    a.opened("m", Duration::from_secs(1)).await;
    b.opened("m", Duration::from_secs(30)).await;
    a.closed("m").await;
    let left: i64 = connection.pttl(circuit).await.unwrap();
    assert!(left > 20_000, "B's longer opening stands: {left} ms left");

    // A close leaves another replica's probe claim alone.
    let () = connection.del(circuit).await.unwrap();
    assert!(b.claim_probe("m", 1).await);
    a.closed("m").await;
    assert!(!a.claim_probe("m", 2).await, "B's claim still holds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_at_once_on_one_replica_share_one_read_of_the_circuit() {
    let Some((redis, sim)) = redis_and_sim().await else {
        return;
    };
    let config = fleet_router_config(&sim, "one-read", 1);
    let (router, _fleet) = replica(&config, &redis.url()).await;
    let routers = [router];
    // The first call also reads the shared token (a script that runs `PTTL` too).
    assert!(load(&routers, 1).await.iter().all(Result::is_ok));

    redis.reset_stats().await;
    let calls = 200;
    assert!(load(&routers, calls).await.iter().all(Result::is_ok));
    let reads = redis.calls_of("pttl").await;
    // One read each would be 200; a read is shared by every call that comes while it
    // is under way or less than 2 ms after its answer.
    assert!(
        (1..=calls / 4).contains(&usize::try_from(reads).unwrap()),
        "{reads} reads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_router_paced_by_requests_per_minute_sends_no_call_into_the_clients_limit() {
    let sim = limited_sim().await;
    let router = support::solo(&paced_config(&sim)).await;
    let per_router = usize::try_from(ALLOWED).unwrap() * 2;
    let results = load(std::slice::from_ref(&router), per_router).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(sim.counters().client_rate_limited, 0, "paced, not refused");
    assert!(busiest_window(&sim) <= usize::try_from(ALLOWED).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refreshed_once_for_the_whole_fleet() {
    let Some((redis, sim)) = redis_and_sim().await else {
        return;
    };
    let config = fleet_router_config(&sim, "refresh", 3);
    let mut routers = Vec::new();
    for _ in 0..3 {
        routers.push(replica(&config, &redis.url()).await.0);
    }
    assert!(load(&routers, 10).await.iter().all(Result::is_ok));
    assert_eq!(sim.counters().token_requests, 1);

    // Every replica's next call meets a 401.
    assert!(sim.revoke_tokens() >= 1);
    let results = load(&routers, 30).await;
    assert!(
        results.iter().all(Result::is_ok),
        "each call refreshes once and succeeds"
    );
    assert_eq!(
        sim.counters().token_requests,
        2,
        "one refresh for the fleet"
    );
}

/// A replica whose forced refreshes are spent (3 at once, then one per 10 s) neither
/// sends again nor shares the token it saw refused: a call that cannot wait for the next
/// refresh fails, and a replica that starts then logs in instead of adopting a token
/// Genesys refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_seen_refused_is_not_shared_while_the_replicas_refreshes_are_spent() {
    let Some((redis, sim)) = redis_and_sim().await else {
        return;
    };
    let mut config = fleet_router_config(&sim, "refused", 2);
    // Shorter than the wait for the next forced refresh, so the call fails at once.
    config.limits.deadline_ms = 5_000;
    config.limits.attempt_timeout_ms = 5_000;
    let (a, _fleet_a) = replica(&config, &redis.url()).await;
    let a = std::slice::from_ref(&a);
    assert!(load(a, 1).await[0].is_ok());
    for _ in 0..3 {
        assert!(sim.revoke_tokens() >= 1);
        assert!(load(a, 1).await[0].is_ok(), "a forced refresh is left");
    }
    // The fourth revocation finds A's refreshes spent: the call fails, and the refused
    // token is not sent again.
    assert!(sim.revoke_tokens() >= 1);
    let prompts = sim.prompt_requests().len();
    assert!(load(a, 1).await[0].is_err());
    assert_eq!(sim.prompt_requests().len(), prompts + 1, "sent once");
    assert_eq!(sim.counters().token_requests, 4);

    let refused = |sim: &SimHandle| sim.counters().by_status.get(&401).copied();
    let refused_before = refused(&sim);
    let (b, _fleet_b) = replica(&config, &redis.url()).await;
    assert!(load(std::slice::from_ref(&b), 1).await[0].is_ok());
    assert_eq!(
        refused(&sim),
        refused_before,
        "B's call carried a token of its own, not the one A saw refused"
    );
    assert_eq!(sim.counters().token_requests, 5, "B logged in");
}

/// The bearer tokens of the prompt calls the simulator received, in order (as its log
/// shows them: redacted, with a fingerprint that tells tokens apart).
fn bearers(sim: &SimHandle) -> Vec<String> {
    sim.prompt_requests()
        .iter()
        .filter_map(|r| r.header("authorization").map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_redis_lost_is_shared_again_by_the_replica_holding_it() {
    let Some((mut redis, sim)) = redis_and_sim().await else {
        return;
    };
    let config = fleet_router_config(&sim, "re-share", 2);
    let recheck = Duration::from_millis(100);
    let fleet_a = support::fleet(&config, &redis.url()).with_token_recheck(recheck);
    let a = support::replica_of(&config, &fleet_a).await;
    assert!(load(std::slice::from_ref(&a), 1).await[0].is_ok());
    let token_a = bearers(&sim)[0].clone();

    // Redis loses everything (as a restart without persistence does), and the copy's
    // recheck interval passes: A's next call finds no token and shares its own again.
    let mut connection = redis.connection().await;
    let () = redis::cmd("FLUSHALL")
        .query_async(&mut connection)
        .await
        .unwrap();
    tokio::time::sleep(recheck).await;
    assert!(load(std::slice::from_ref(&a), 1).await[0].is_ok());
    let shared: Option<String> = redis::cmd("GET")
        .arg("re-share:token")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(
        shared.is_some_and(|t| t.starts_with("sim-")),
        "A shared a token again"
    );
    assert_eq!(bearers(&sim)[1], token_a, "its own");
    let left: i64 = redis::cmd("PTTL")
        .arg("re-share:token")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(
        (1..=86_400_000).contains(&left),
        "for its time left: {left} ms"
    );

    // A replica that starts now takes that token: one login for the fleet.
    let fleet_b = support::fleet(&config, &redis.url()).with_token_recheck(recheck);
    let b = support::replica_of(&config, &fleet_b).await;
    assert!(load(std::slice::from_ref(&b), 1).await[0].is_ok());
    assert_eq!(bearers(&sim)[2], token_a, "B uses A's token");
    assert_eq!(sim.counters().token_requests, 1, "one token for the fleet");

    // With Redis gone, B keeps the valid copy it read past the interval rather than
    // logging in (A's local source holds the token A fetched, so only B can tell).
    redis.kill();
    tokio::time::sleep(recheck).await;
    assert!(load(&[a, b], 2).await.iter().all(Result::is_ok));
    assert!(bearers(&sim).iter().all(|t| *t == token_a));
    assert_eq!(
        sim.counters().token_requests,
        1,
        "no login while the copy is valid"
    );
    assert!(fleet_a.is_degraded() && fleet_b.is_degraded());
}

/// Polls `key` until it holds a value other than `old`, for `within` at most.
async fn new_value(redis: &RedisServer, key: &str, old: &str, within: Duration) -> String {
    let mut connection = redis.connection().await;
    let started = std::time::Instant::now();
    loop {
        let now: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut connection)
            .await
            .unwrap();
        if let Some(value) = now.filter(|v| v != old) {
            return value;
        }
        assert!(
            started.elapsed() < within,
            "{key} still holds the old value"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long `key` has left, in ms (`-2`: gone).
async fn pttl(redis: &RedisServer, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut redis.connection().await)
        .await
        .unwrap()
}

/// Polls `key`'s time left until `done` says yes to it, for `within` at most; the last
/// time left read.
async fn pttl_until(
    redis: &RedisServer,
    key: &str,
    within: Duration,
    done: impl Fn(i64) -> bool,
) -> i64 {
    let started = std::time::Instant::now();
    loop {
        let left = pttl(redis, key).await;
        if done(left) {
            return left;
        }
        assert!(started.elapsed() < within, "{key}: still {left} ms left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two replicas on one 6 s token, which falls due for renewal 3 s after it was granted
/// (a short life's refresh margin is half of it); their routers and the token, once A's
/// first call has fetched it and it has fallen due.
async fn on_a_short_token(
    redis: &RedisServer,
    sim: &SimHandle,
    prefix: &str,
) -> ([gateway_router::Router; 2], String) {
    sim.set_token_lifetime(Duration::from_secs(6));
    let config = fleet_router_config(sim, prefix, 2);
    let recheck = Duration::from_millis(100);
    let fleet_a = support::fleet(&config, &redis.url()).with_token_recheck(recheck);
    let fleet_b = support::fleet(&config, &redis.url()).with_token_recheck(recheck);
    let a = support::replica_of(&config, &fleet_a).await;
    let b = support::replica_of(&config, &fleet_b).await;
    assert!(load(std::slice::from_ref(&a), 1).await[0].is_ok());
    let mut connection = redis.connection().await;
    let token: String = redis::cmd("GET")
        .arg(format!("{prefix}:token"))
        .query_async(&mut connection)
        .await
        .unwrap();
    let fresh = pttl(redis, &format!("{prefix}:token:fresh")).await;
    assert!((1..=3_000).contains(&fresh), "fresh for {fresh} ms");
    // Once it is due, its freshness key is gone.
    let key = format!("{prefix}:token:fresh");
    pttl_until(redis, &key, Duration::from_secs(4), |left| left == -2).await;
    ([a, b], token)
}

/// A shared token due for renewal is renewed in the background by the first replica to
/// read it, while it is still valid: calls go on with it meanwhile, the fleet logs in once
/// more, and every replica moves to the new token without waiting for a login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_renews_its_token_before_it_expires() {
    let Some((redis, sim)) = redis_and_sim().await else {
        return;
    };
    let granted = std::time::Instant::now();
    let ([a, b], first) = on_a_short_token(&redis, &sim, "renew").await;

    // B reads the due token: its call goes with it, and the renewal starts.
    assert!(load(std::slice::from_ref(&b), 1).await[0].is_ok());
    assert_eq!(
        bearers(&sim)[1],
        bearers(&sim)[0],
        "the due token, still valid"
    );
    // The new token is shared before the first stops being handed out (5.7 s).
    let left = Duration::from_millis(5_700).saturating_sub(granted.elapsed());
    let second = new_value(&redis, "renew:token", &first, left).await;
    assert!(second.starts_with("sim-"));
    assert_eq!(
        sim.counters().token_requests,
        2,
        "one renewal for the fleet"
    );
    let fresh = pttl(&redis, "renew:token:fresh").await;
    assert!(fresh > 1_000, "the new token is fresh for {fresh} ms");

    // Each replica takes it at its next read of Redis (calls that come while that read is
    // under way go with the copy, still valid), and keeps it.
    tokio::time::sleep(Duration::from_millis(150)).await;
    for replica in [&a, &b] {
        assert!(load(std::slice::from_ref(replica), 1).await[0].is_ok());
    }
    assert!(load(&[a, b], 2).await.iter().all(Result::is_ok));
    let sent = bearers(&sim);
    assert!(sent[2..].iter().all(|t| *t != sent[0]), "{sent:?}");
    assert_eq!(sim.counters().token_requests, 2);
}

/// A renewal whose login fails leaves the due token shared and marks it fresh for
/// `RENEW_RETRY` (10 s): the other replicas do not each try a login of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_renewal_is_tried_again_by_the_fleet_once_per_interval() {
    let Some((redis, sim)) = redis_and_sim().await else {
        return;
    };
    let ([a, b], first) = on_a_short_token(&redis, &sim, "renew-failed").await;

    sim.script(
        Target::Token,
        [Scripted::Status {
            status: 503,
            code: None,
        }],
    );
    assert!(load(std::slice::from_ref(&b), 1).await[0].is_ok());
    // The failed renewal marks the token fresh again.
    let key = "renew-failed:token:fresh";
    let fresh = pttl_until(&redis, key, Duration::from_secs(2), |left| left != -2).await;
    assert!(fresh > 5_000, "fresh for {fresh} ms");
    assert_eq!(sim.counters().token_requests, 2);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(load(&[a, b], 2).await.iter().all(Result::is_ok));
    assert_eq!(sim.counters().token_requests, 2, "no replica tried again");
    let shared: String = redis::cmd("GET")
        .arg("renew-failed:token")
        .query_async(&mut redis.connection().await)
        .await
        .unwrap();
    assert_eq!(shared, first, "the due token stays shared");
}

/// A Redis on loopback that accepts connections and never answers; its URL, and the task
/// holding its connections.
async fn silent_redis() -> (String, tokio::task::JoinHandle<()>) {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}/", silent.local_addr().unwrap());
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    (url, holder)
}

/// A config with a 1 s deadline in a fleet whose Redis commands may each take 10 s.
fn with_slow_commands(sim: &SimHandle) -> gateway_model::RouterConfig {
    let mut config = router_config(sim);
    config.limits.deadline_ms = 1_000;
    config.limits.attempt_timeout_ms = 1_000;
    config.fleet = Some(FleetConfig {
        command_timeout_ms: 10_000,
        token_lock_ms: 30_000,
        ..fleet_config("silent", 2)
    });
    config
}

/// A Redis that accepts connections and never answers holds no call past its deadline,
/// even when each command may wait longer than the whole call (on tokio's paused clock:
/// the test waits for nothing real).
#[tokio::test(start_paused = true)]
async fn a_redis_that_never_answers_holds_no_call_past_its_deadline() {
    let (url, holder) = silent_redis().await;
    let sim = Sim::builder().start().await.unwrap();
    let (router, _fleet) = replica(&with_slow_commands(&sim), &url).await;
    let started = tokio::time::Instant::now();
    let result = router
        .route(gateway_model::RouteRequest::new("reply", "a"))
        .await;
    let took = started.elapsed();
    assert!(took <= Duration::from_millis(1_050), "took {took:?}");
    // Said as a timeout of the model it was asking about, not as a client error.
    let err = result.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(err.http_status(), 504);
    holder.abort();
}

/// Regression: with Redis silent and no shared copy of the token, the one call a second
/// that asks Redis again held the token lock through its command timeout, and every other
/// call queued behind it, only to be sent to the local token afterwards. They now go to
/// the local token at once (on tokio's paused clock: the test waits for nothing real).
#[tokio::test(start_paused = true)]
async fn with_redis_silent_calls_do_not_queue_behind_the_one_asking_it() {
    let (url, holder) = silent_redis().await;
    let sim = Sim::builder().start().await.unwrap();
    let mut config = router_config(&sim);
    config.fleet = Some(FleetConfig {
        command_timeout_ms: 400,
        ..fleet_config("silent-queue", 2)
    });
    // The whole fleet (circuits asked first), and its shared token alone.
    let (whole, _fleet) = replica(&config, &url).await;
    let tokens = support::fleet(&config, &url);
    let token_only = gateway_router::Router::builder(config.clone())
        .credentials(gateway_auth::Credentials::new(
            gateway_sim::DEFAULT_CLIENT_ID,
            gateway_sim::DEFAULT_CLIENT_SECRET,
        ))
        .token_layer(move |local| tokens.tokens(local))
        .build()
        .await
        .unwrap();
    for router in [whole, token_only] {
        // The first call finds Redis silent: the replica is degraded, the call local.
        router
            .route(gateway_model::RouteRequest::new("reply", "first"))
            .await
            .unwrap();
        // A second later one call may ask Redis again; two calls come at once.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let timed = |prompt: &'static str| {
            let router = router.clone();
            async move {
                let started = tokio::time::Instant::now();
                router
                    .route(gateway_model::RouteRequest::new("reply", prompt))
                    .await
                    .unwrap();
                started.elapsed()
            }
        };
        let (a, b) = tokio::join!(timed("a"), timed("b"));
        assert!(
            a.min(b) < Duration::from_millis(200),
            "one call waited out Redis, the other did not wait for it: {a:?} {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(1_100)).await;
    }
    holder.abort();
}

/// The fleet's rate budget alone (no shared circuits or token): a reservation Redis never
/// answers ends with the call's deadline, not the command's timeout.
#[tokio::test(start_paused = true)]
async fn a_rate_budget_that_never_answers_holds_no_call_past_its_deadline() {
    let (url, holder) = silent_redis().await;
    let sim = Sim::builder().start().await.unwrap();
    let mut config = with_slow_commands(&sim);
    config.limits.requests_per_minute = Some(600);
    let fleet = support::fleet(&config, &url);
    let router = gateway_router::Router::builder(config)
        .credentials(gateway_auth::Credentials::new(
            gateway_sim::DEFAULT_CLIENT_ID,
            gateway_sim::DEFAULT_CLIENT_SECRET,
        ))
        .rate_budget(fleet.rate_budget().unwrap())
        .build()
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let result = router
        .route(gateway_model::RouteRequest::new("reply", "a"))
        .await;
    let took = started.elapsed();
    assert!(took <= Duration::from_millis(1_050), "took {took:?}");
    let err = result.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(sim.counters().prompt_requests, 0, "nothing was sent");
    holder.abort();
}

/// A slot granted for a request never sent (its call dropped while waiting for it) is
/// given back to the fleet by the replica's next reservation, but not past a pause the
/// gateway asked for. The fleet once kept every such slot, pushing each later call back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_never_sent_is_given_back_to_the_fleet_but_not_past_a_pause() {
    let Some((redis, sim)) = redis_and_sim().await else {
        return;
    };
    let mut config = fleet_router_config(&sim, "give-back", 2);
    config.limits.requests_per_minute = Some(60); // one a second, no burst
    config.limits.rate_burst = 0;
    let fleet = support::fleet(&config, &redis.url());
    let budget = fleet.rate_budget().unwrap();
    let long = Duration::from_secs(60);
    let about_a_second = Duration::from_millis(500)..=Duration::from_secs(1);

    assert_eq!(budget.reserve(long).await, Ok(Duration::ZERO));
    let second = budget.reserve(long).await.unwrap();
    assert!(about_a_second.contains(&second), "{second:?}");
    // That second slot's request was never sent: the third waits as it would have.
    budget.release(tokio::time::Instant::now() + second);
    let third = budget.reserve(long).await.unwrap();
    assert!(
        about_a_second.contains(&third),
        "{third:?}: the slot was kept"
    );
    // A slot whose time passed before the next reservation is kept: the pace moved on,
    // and giving it back would let one request more through than the rate allows.
    budget.release(tokio::time::Instant::now());
    let fourth = budget.reserve(long).await.unwrap();
    assert!(
        fourth > Duration::from_millis(1_500),
        "{fourth:?}: a past slot was given back"
    );

    // A pause of 10 s (sent to Redis in the background: waited for here).
    budget.pause(Duration::from_secs(10));
    let mut connection = redis.connection().await;
    let held = async {
        loop {
            let paused: Option<String> = redis::cmd("GET")
                .arg("give-back:rate:paused")
                .query_async(&mut connection)
                .await
                .unwrap();
            if paused.is_some() {
                break;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the pause reaches Redis");
    for _ in 0..20 {
        budget.release(tokio::time::Instant::now() + Duration::from_secs(10));
    }
    let after_pause = budget.reserve(long).await.unwrap();
    assert!(
        after_pause > Duration::from_secs(9),
        "slots given back do not shorten a pause: {after_pause:?}"
    );
    assert!(!fleet.is_degraded(), "Redis answered every reservation");
}

/// A call dropped while it holds the fleet's token-fetch lock (its deadline passed while
/// the login host hung) releases the lock at once, instead of leaving every replica to
/// wait out its lease (`token_lock_ms`) and then log in on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_dropped_mid_fetch_releases_the_fleets_token_lock() {
    let Some((redis, sim)) = redis_and_sim().await else {
        return;
    };
    let mut config = fleet_router_config(&sim, "dropped-lock", 1);
    config.limits.deadline_ms = 1_000;
    config.limits.attempt_timeout_ms = 1_000;
    let lease = Duration::from_millis(config.fleet.as_ref().unwrap().token_lock_ms);
    let (router, _fleet) = replica(&config, &redis.url()).await;
    assert!(load(std::slice::from_ref(&router), 1).await[0].is_ok());

    // The next call meets a 401; the login it then makes, under the lock, hangs.
    assert!(sim.revoke_tokens() >= 1);
    sim.script(Target::Token, [Scripted::Stall]);
    assert!(load(std::slice::from_ref(&router), 1).await[0].is_err());

    let mut connection = redis.connection().await;
    let started = std::time::Instant::now();
    loop {
        let held: Option<String> = redis::cmd("GET")
            .arg("dropped-lock:token:lock")
            .query_async(&mut connection)
            .await
            .unwrap();
        if held.is_none() {
            break;
        }
        assert!(
            started.elapsed() < lease / 4,
            "the lock is still held {:?} later (lease {lease:?})",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback proxy to Redis, as a replica sees a Redis behind a name that can change:
/// connections made before [`Proxy::cut`] go silent (what they receive is dropped,
/// nothing is answered, nothing is closed), as a failed-over Redis looks to a client;
/// connections made after [`Proxy::fail_over`] go to the second target.
struct Proxy {
    addr: std::net::SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicU64>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicU64>,
    failed_over: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(targets: [std::net::SocketAddr; 2]) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let failed_over = Arc::new(AtomicBool::new(false));
        let (cut_in, accepted_in, failed_over_in) = (
            Arc::clone(&cut),
            Arc::clone(&accepted),
            Arc::clone(&failed_over),
        );
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let generation = accepted_in.fetch_add(1, Ordering::SeqCst) + 1;
                let target = targets[usize::from(failed_over_in.load(Ordering::SeqCst))];
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                for (from, to) in [(client_read, server_write), (server_read, client_write)] {
                    let cut = Arc::clone(&cut_in);
                    tokio::spawn(pass(from, to, move || {
                        cut.load(Ordering::SeqCst) >= generation
                    }));
                }
            }
        });
        Self {
            addr,
            cut,
            accepted,
            failed_over,
            task,
        }
    }

    /// Silences every connection made so far.
    fn cut(&self) {
        use std::sync::atomic::Ordering;
        self.cut
            .store(self.accepted.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Sends new connections to the second target; those made so far stay where they are.
    fn fail_over(&self) {
        self.failed_over
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }
}

/// The address `redis` listens on.
fn address(redis: &RedisServer) -> std::net::SocketAddr {
    redis
        .url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

/// Waits (at most six seconds: a degraded replica asks Redis once a second) until
/// `fleet` is joined again, routing a call at a time meanwhile.
async fn until_rejoined(routers: &[gateway_router::Router], fleet: &gateway_fleet::Fleet) {
    for _ in 0..60 {
        assert!(load(routers, 1).await.iter().all(Result::is_ok));
        if !fleet.is_degraded() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the replica did not rejoin the fleet");
}

/// Copies `from` to `to` until `silenced()`, then drops what arrives.
async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    silenced: impl Fn() -> bool,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        if !silenced() && to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Regression: a Redis connection that went silent (no reset: a failover behind the
/// same name) kept every command timing out on it, so the replica stayed degraded
/// until the kernel gave up on the socket, about 15 minutes later, though Redis
/// answered new connections. A command that times out now replaces the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_redis_connection_went_silent_rejoins_on_a_new_one() {
    let Some((redis, sim)) = redis_and_sim().await else {
        return;
    };
    let proxy = Proxy::start([address(&redis); 2]).await;
    let mut config = router_config(&sim);
    config.fleet = Some(FleetConfig {
        command_timeout_ms: 300,
        ..fleet_config("went-silent", 1)
    });
    let (router, fleet) = replica(&config, &proxy.url()).await;
    let routers = [router];
    assert!(load(&routers, 3).await.iter().all(Result::is_ok));
    assert!(!fleet.is_degraded());

    proxy.cut();
    // The calls go on locally; the fleet notices.
    assert!(load(&routers, 3).await.iter().all(Result::is_ok));
    assert!(fleet.is_degraded());
    // A degraded replica asks Redis again once a second, on a new connection.
    until_rejoined(&routers, &fleet).await;
    proxy.task.abort();
}

/// Regression: after a failover that leaves the old primary up as a read-only replica
/// (the name now pointing at the new primary), every write on the old connection was
/// refused `READONLY`, which the client library does not reconnect on: the replica
/// stayed degraded for as long as the old server stayed up. A `READONLY` answer now
/// replaces the connection, which reaches the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_redis_became_read_only_follows_the_failover() {
    let Some((old, sim)) = redis_and_sim().await else {
        return;
    };
    let new = RedisServer::start().expect("redis-server was found once");
    let proxy = Proxy::start([address(&old), address(&new)]).await;
    let mut config = fleet_router_config(&sim, "read-only", 1);
    // Each call writes the fleet's rate cell.
    config.limits.requests_per_minute = Some(60_000);
    let (router, fleet) = replica(&config, &proxy.url()).await;
    let routers = [router];
    assert!(load(&routers, 3).await.iter().all(Result::is_ok));
    assert!(!fleet.is_degraded());

    // The old primary follows the new one, and the name moves to the new one.
    let port = address(&new).port().to_string();
    let () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(&port)
        .query_async(&mut old.connection().await)
        .await
        .unwrap();
    proxy.fail_over();
    // The calls go on locally; the fleet notices.
    assert!(load(&routers, 3).await.iter().all(Result::is_ok));
    assert!(fleet.is_degraded());
    until_rejoined(&routers, &fleet).await;
    proxy.task.abort();
}

/// A token source that says its token never expires (`Duration::MAX`).
struct NeverExpires(gateway_transport::AccessToken);

impl gateway_transport::TokenSource for NeverExpires {
    fn token(
        &self,
    ) -> gateway_transport::BoxFuture<
        '_,
        Result<gateway_transport::AccessToken, gateway_transport::TokenError>,
    > {
        let token = self.0.clone();
        Box::pin(async move { Ok(token) })
    }
    fn invalidate(&self, _: &gateway_transport::AccessToken) {}
    fn valid_for(&self, _: &gateway_transport::AccessToken) -> Option<Duration> {
        Some(Duration::MAX)
    }
}

/// Regression: a token whose source said it never expires was shared with an expiry no
/// Redis takes (`PX 18446744073709551615`): the script failed, the replica went degraded
/// against a healthy Redis, and the token was never shared. It is shared for 48 h.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_never_expires_is_shared_for_the_longest_a_share_lasts() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let fleet = gateway_fleet::Fleet::connect(
        &redis.url(),
        &fleet_config("forever", 1),
        &gateway_model::LimitsConfig::default(),
    )
    .unwrap();
    let token = gateway_transport::AccessToken::new("abcdefghijklmnop").unwrap();
    let tokens = fleet.tokens(std::sync::Arc::new(NeverExpires(token)));
    tokens.token().await.unwrap();
    assert!(
        !fleet.is_degraded(),
        "a healthy Redis left the replica degraded"
    );
    let left = pttl(&redis, "forever:token").await;
    assert!(
        (1..=172_800_000).contains(&left),
        "shared for at most 48 h: {left} ms"
    );
}

/// Regression: the fleet cut a burst's tolerance to an hour's worth, so with a burst
/// of 5,000 calls at one a minute it let 61 go at once where one replica's own pacer
/// (and the config) says 5,001. (One a minute, so no slot comes back while the 5,000
/// round trips to Redis run.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleets_burst_is_the_configured_one() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let limits = gateway_model::LimitsConfig {
        requests_per_minute: Some(1),
        rate_burst: 5_000,
        ..gateway_model::LimitsConfig::default()
    };
    let fleet =
        gateway_fleet::Fleet::connect(&redis.url(), &fleet_config("burst", 1), &limits).unwrap();
    let budget = fleet.rate_budget().unwrap();
    let mut at_once = 0;
    while at_once < 6_000 && budget.reserve(Duration::ZERO).await.is_ok() {
        at_once += 1;
    }
    let local = gateway_transport::LocalRateBudget::new(1, 5_000);
    let mut locally = 0;
    while locally < 6_000 && local.try_reserve(Duration::ZERO).is_ok() {
        locally += 1;
    }
    assert_eq!(at_once, locally);
    assert_eq!(locally, 5_001);
}
