//! A half-open probe claimed across the fleet: freed for the other replicas when it ends
//! without a verdict, even when the call is dropped mid-flight.

use std::sync::Arc;

use gateway_model::ModelId;
use gateway_transport::SharedCircuits;

use crate::breaker::Transition;

/// The fleet's claim on one model's probe, held by the call that sends it.
pub(crate) struct FleetProbe {
    shared: Arc<dyn SharedCircuits>,
    model: ModelId,
    settled: bool,
}

impl FleetProbe {
    /// The claim this call holds on `model`'s probe.
    pub(crate) fn new(shared: &Arc<dyn SharedCircuits>, model: &ModelId) -> Self {
        Self {
            shared: Arc::clone(shared),
            model: model.clone(),
            settled: false,
        }
    }

    /// Ends the claim once the probe has reported: an opening or a closing already
    /// told the fleet (and freed the probe); otherwise it is freed here.
    pub(crate) async fn settle(mut self, transition: Transition) {
        self.settled = true;
        if transition == Transition::None {
            self.shared.released(self.model.as_str()).await;
        }
    }
}

impl Drop for FleetProbe {
    /// A call dropped before its probe reported frees the claim in the background.
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = Arc::clone(&self.shared);
            let model = self.model.clone();
            runtime.spawn(async move { shared.released(model.as_str()).await });
        }
    }
}
