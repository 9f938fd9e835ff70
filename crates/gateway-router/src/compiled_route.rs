//! A route compiled from its config: the selector, the fallback chain, the sampling
//! bounds and the labels every call on it carries.

use gateway_model::{Metadata, ModelId, RouteConfig, SafetyFilter};

use crate::sampling::RouteSampling;
use crate::selection::StickySelector;

/// A route, compiled from its config.
#[derive(Debug)]
pub(crate) struct CompiledRoute {
    pub(crate) selector: StickySelector,
    /// For each model the selector can pick, its whole chain: it, then the fallbacks
    /// that differ from it (built once, so a call copies no ids to know its chain).
    chains: Vec<Vec<ModelId>>,
    pub(crate) sampling: RouteSampling,
    pub(crate) safety_filters: Vec<SafetyFilter>,
    /// The route's labels on top of `routingVersion` and `dispatchSource`.
    metadata: Metadata,
}

impl CompiledRoute {
    pub(crate) fn new(config: &RouteConfig) -> Self {
        let selector = match &config.model {
            Some(model) => StickySelector::single(model.clone()),
            None => StickySelector::new(&config.split),
        };
        let chains = selector
            .models()
            .map(|primary| {
                std::iter::once(primary)
                    .chain(config.fallbacks.iter().filter(|m| *m != primary))
                    .cloned()
                    .collect()
            })
            .collect();
        Self {
            selector,
            chains,
            sampling: RouteSampling {
                temperature: config.temperature,
                max_tokens: config.max_tokens,
                top_p: config.top_p,
            },
            safety_filters: config.safety_filters.clone(),
            metadata: Metadata::defaults().overlaid(&config.metadata),
        }
    }

    /// The chain of a call with sticky key `key`: the model selected for it, then the
    /// fallbacks that differ from it.
    pub(crate) fn chain(&self, key: &str) -> &[ModelId] {
        self.chains
            .get(self.selector.position(key))
            .map_or(&[], Vec::as_slice)
    }

    /// Every `(from, to)` pair of models a fallback on this route may join: the
    /// neighbours of each chain.
    pub(crate) fn fallback_pairs(&self) -> impl Iterator<Item = (&ModelId, &ModelId)> {
        self.chains
            .iter()
            .flat_map(|chain| chain.iter().zip(chain.iter().skip(1)))
    }

    /// The labels a call sends: the route's (with `routingVersion` and
    /// `dispatchSource`), then the caller's on top (a caller's label wins).
    pub(crate) fn labels(&self, request: &Metadata) -> Metadata {
        self.metadata.overlaid(request)
    }
}
