//! Fleet mode against a real `redis-server` and the simulator: replicas share one token
//! and one rate budget, and keep working on local state while Redis is down.

mod support;

use std::time::Duration;

use gateway_sim::Sim;
use support::{RedisServer, fleet_config, load, replica, router_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_cold_starting_together_fetch_one_token() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let sim = Sim::builder().start().await.unwrap();
    let mut config = router_config(&sim);
    config.fleet = Some(fleet_config("one-token", 3));
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
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let sim = Sim::builder().start().await.unwrap();
    let mut config = router_config(&sim);
    config.limits.deadline_ms = 5_000;
    config.limits.attempt_timeout_ms = 2_000;
    // A rate budget, so every attempt asks Redis for a slot.
    config.limits.requests_per_minute = Some(60_000);
    config.limits.rate_burst = 50;
    config.fleet = Some(fleet_config("redis-down", 2));
    let metrics = gateway_telemetry::LocalMetrics::new();
    let fleet_a = metrics.scope(|| support::fleet(&config, &redis.url()));
    let a = support::replica_of(&config, &fleet_a).await;
    let (b, fleet_b) = replica(&config, &redis.url()).await;
    let routers = [a, b];

    assert!(load(&routers, 20).await.iter().all(Result::is_ok));
    assert_eq!(sim.counters().token_requests, 1);
    assert!(!fleet_a.is_degraded());

    redis.kill();
    let during = load(&routers, 50).await;
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
