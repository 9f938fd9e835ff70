//! Checking the configured models against the gateway's catalogue
//! (`GET /api/v2/ai/models`, every page), at start-up and on demand; the last result is
//! cached for readiness checks.

use std::collections::BTreeSet;
use std::time::SystemTime;

use gateway_model::{ModelEntityListing, ModelId};
use gateway_transport::{Call, TransportError};
use http::Uri;

use crate::ids;
use crate::router::{Router, locked};

/// Page size used to read the catalogue.
const PAGE_SIZE: u32 = 100;
/// Pages read at most (a guard against a catalogue that never ends).
const MAX_PAGES: u32 = 1_000;

/// The result of a catalogue check.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogueCheck {
    /// When the check ran.
    pub checked_at: SystemTime,
    /// Every model id the catalogue lists.
    pub available: BTreeSet<String>,
    /// Configured models the catalogue does not list, sorted.
    pub unknown: Vec<ModelId>,
}

impl CatalogueCheck {
    /// Whether every configured model is in the catalogue.
    pub fn all_known(&self) -> bool {
        self.unknown.is_empty()
    }
}

impl Router {
    /// Reads the whole catalogue and lists configured models it lacks. The result is
    /// cached ([`Router::last_model_check`]).
    pub async fn check_models(&self) -> Result<CatalogueCheck, TransportError> {
        let inner = &*self.inner;
        let mut available = BTreeSet::new();
        for page in 1..=MAX_PAGES {
            let url = format!(
                "{}?pageNumber={page}&pageSize={PAGE_SIZE}",
                inner.models_uri
            );
            let uri: Uri = inner.transport.client().check_url(&url)?;
            let answer = inner
                .transport
                .execute(Call::get(uri, ids::random().to_string()))
                .await?;
            let listing: ModelEntityListing = answer.json()?;
            available.extend(listing.entities.iter().map(|e| e.id.as_str().to_owned()));
            if !listing.has_next() || listing.entities.is_empty() {
                break;
            }
        }
        let unknown = inner
            .config
            .all_models()
            .into_iter()
            .filter(|m| !available.contains(m.as_str()))
            .cloned()
            .collect();
        let check = CatalogueCheck {
            checked_at: SystemTime::now(),
            available,
            unknown,
        };
        *inner
            .catalogue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(check.clone());
        Ok(check)
    }

    /// The result of the last [`Router::check_models`], if one ran.
    pub fn last_model_check(&self) -> Option<CatalogueCheck> {
        locked(&self.inner.catalogue)
    }
}
