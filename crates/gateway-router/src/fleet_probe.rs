//! A half-open probe claimed across the fleet: freed for the other replicas when it ends
//! without opening the circuit again (no verdict, or a success), even when the call is
//! dropped mid-flight or while the claim is made.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gateway_model::ModelId;
use gateway_transport::SharedCircuits;

use crate::breaker::Transition;

/// The number the next claim takes: each claim frees only itself, never a later probe's.
static NEXT_CLAIM: AtomicU64 = AtomicU64::new(1);

/// The fleet's claim on one model's probe, held by the call that sends it.
pub(crate) struct FleetProbe {
    shared: Arc<dyn SharedCircuits>,
    model: ModelId,
    claim: u64,
    settled: bool,
    /// How long a release left to the background may take: past it, the claim's lease
    /// (the call's deadline) has ended anyway.
    bound: Duration,
}

impl FleetProbe {
    /// Claims `model`'s probe across the fleet; `None` if another claim has it. A call
    /// dropped while the claim is made frees it in the background (given up after
    /// `bound`), whether or not it was granted.
    pub(crate) async fn claim(
        shared: &Arc<dyn SharedCircuits>,
        model: &ModelId,
        bound: Duration,
    ) -> Option<Self> {
        let mut this = Self {
            shared: Arc::clone(shared),
            model: model.clone(),
            claim: NEXT_CLAIM.fetch_add(1, Ordering::Relaxed),
            settled: false,
            bound,
        };
        if this.shared.claim_probe(model.as_str(), this.claim).await {
            Some(this)
        } else {
            this.settled = true;
            None
        }
    }

    /// Ends the claim once the probe has reported: an opening already told the fleet
    /// (and freed the probe); otherwise it is freed here.
    pub(crate) async fn settle(mut self, transition: Transition) {
        self.settled = true;
        if !matches!(transition, Transition::Opened(_)) {
            self.shared.released(self.model.as_str(), self.claim).await;
        }
    }
}

impl Drop for FleetProbe {
    /// A call dropped before its probe reported frees the claim in the background,
    /// given up after the claim's `bound`.
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = Arc::clone(&self.shared);
            let (model, claim) = (self.model.clone(), self.claim);
            let released = async move { shared.released(model.as_str(), claim).await };
            runtime.spawn(tokio::time::timeout(self.bound, released));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use gateway_transport::BoxFuture;
    use tokio::sync::Notify;

    use super::*;

    /// Shared circuits that never answer a claim, and note each release.
    #[derive(Default)]
    struct Unanswered {
        claims: Mutex<Vec<u64>>,
        releases: Mutex<Vec<u64>>,
        released: Notify,
    }

    impl SharedCircuits for Unanswered {
        fn open_for(&self, _: &str) -> BoxFuture<'_, Option<Duration>> {
            Box::pin(std::future::ready(None))
        }
        fn claim_probe(&self, _: &str, claim: u64) -> BoxFuture<'_, bool> {
            self.claims.lock().unwrap().push(claim);
            Box::pin(std::future::pending())
        }
        fn opened(&self, _: &str, _: Duration) -> BoxFuture<'_, ()> {
            Box::pin(std::future::ready(()))
        }
        fn released(&self, _: &str, claim: u64) -> BoxFuture<'_, ()> {
            self.releases.lock().unwrap().push(claim);
            self.released.notify_one();
            Box::pin(std::future::ready(()))
        }
        fn closed(&self, _: &str) -> BoxFuture<'_, ()> {
            Box::pin(std::future::ready(()))
        }
    }

    /// Shared circuits that say every model is open for ever, as a server that only
    /// looks like Redis could.
    struct OpenForEver;

    impl SharedCircuits for OpenForEver {
        fn open_for(&self, _: &str) -> BoxFuture<'_, Option<Duration>> {
            Box::pin(std::future::ready(Some(Duration::MAX)))
        }
        fn claim_probe(&self, _: &str, _: u64) -> BoxFuture<'_, bool> {
            Box::pin(std::future::ready(true))
        }
        fn opened(&self, _: &str, _: Duration) -> BoxFuture<'_, ()> {
            Box::pin(std::future::ready(()))
        }
        fn released(&self, _: &str, _: u64) -> BoxFuture<'_, ()> {
            Box::pin(std::future::ready(()))
        }
        fn closed(&self, _: &str) -> BoxFuture<'_, ()> {
            Box::pin(std::future::ready(()))
        }
    }

    /// Regression: an opening the fleet reported was taken as it came, so one absurd
    /// answer shut the model out on this replica for about 30 years, and told callers so.
    #[tokio::test]
    async fn a_fleet_opening_past_any_this_replica_makes_is_cut_to_the_longest() {
        use gateway_model::{EnvironmentConfig, RouteConfig, RouteRequest, RouterConfig};

        let sim = gateway_sim::Sim::builder().start().await.unwrap();
        let mut config = RouterConfig::new(EnvironmentConfig::at(sim.base_url()))
            .with_route("r", RouteConfig::to_model("model-gen-4"));
        config.retry.max_retry_after_s = 30;
        let longest = config.longest_circuit_opening();
        let router = crate::Router::builder(config)
            .credentials(gateway_auth::Credentials::new(
                gateway_sim::DEFAULT_CLIENT_ID,
                gateway_sim::DEFAULT_CLIENT_SECRET,
            ))
            .shared_circuits(Arc::new(OpenForEver))
            .without_audit()
            .build()
            .await
            .unwrap();
        let err = router
            .route(RouteRequest::new("r", "hi"))
            .await
            .unwrap_err();
        assert_eq!(err.http_status(), 503, "{err}");
        let told = err
            .retry_after()
            .expect("when the circuit lets a call through");
        assert!(told <= longest, "{told:?} against at most {longest:?}");
        assert_eq!(sim.counters().prompt_requests, 0);
    }

    #[tokio::test]
    async fn a_call_dropped_while_its_claim_is_made_frees_that_claim() {
        let circuits = Arc::new(Unanswered::default());
        let shared: Arc<dyn SharedCircuits> = circuits.clone();
        let model = ModelId::from("m");
        let mut claim = Box::pin(FleetProbe::claim(&shared, &model, Duration::from_secs(60)));
        // One poll sends the claim (which Redis may grant); then the call is dropped.
        assert!(
            tokio::time::timeout(Duration::ZERO, &mut claim)
                .await
                .is_err()
        );
        drop(claim);
        tokio::time::timeout(Duration::from_secs(5), circuits.released.notified())
            .await
            .expect("the claim is released in the background");
        let claims = circuits.claims.lock().unwrap().clone();
        assert_eq!(claims.len(), 1);
        assert_eq!(*circuits.releases.lock().unwrap(), claims, "that claim");
    }
}
