//! A route compiled from its config: the selector, the fallback chain, the sampling
//! bounds and the labels every call on it carries.

use gateway_model::{Metadata, ModelId, RouteConfig, SafetyFilter};

use crate::sampling::RouteSampling;
use crate::selection::StickySelector;

/// A route, compiled from its config.
#[derive(Debug)]
pub(crate) struct CompiledRoute {
    pub(crate) selector: StickySelector,
    pub(crate) fallbacks: Vec<ModelId>,
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
        Self {
            selector,
            fallbacks: config.fallbacks.clone(),
            sampling: RouteSampling {
                temperature: config.temperature,
                max_tokens: config.max_tokens,
                top_p: config.top_p,
            },
            safety_filters: config.safety_filters.clone(),
            metadata: with_labels(&Metadata::defaults(), &config.metadata),
        }
    }

    /// The chain for a call: the selected model, then the fallbacks that differ from it.
    pub(crate) fn chain<'a>(&'a self, selected: &'a ModelId) -> Vec<&'a ModelId> {
        let mut chain = Vec::with_capacity(1 + self.fallbacks.len());
        chain.push(selected);
        chain.extend(self.fallbacks.iter().filter(|m| *m != selected));
        chain
    }

    /// The labels a call sends: the route's (with `routingVersion` and
    /// `dispatchSource`), then the caller's on top (a caller's label wins).
    pub(crate) fn labels(&self, request: &Metadata) -> Metadata {
        with_labels(&self.metadata, request)
    }
}

/// `base`'s labels with `over`'s on top.
fn with_labels(base: &Metadata, over: &Metadata) -> Metadata {
    let mut merged = base.clone();
    for (k, v) in &over.0 {
        merged.insert(k.clone(), v.clone());
    }
    merged
}
