//! Checking the configured models against the gateway's catalogue
//! (`GET /api/v2/ai/models`, every page), and the cache of the last result that
//! readiness checks read.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use gateway_model::{ModelEntityListing, ModelId};
use gateway_transport::{Call, Transport, TransportError};
use http::Uri;
use tokio::time::Instant;

use crate::ids;

/// Page size used to read the catalogue.
const PAGE_SIZE: u32 = 100;
/// Pages read at most (a guard against a catalogue that never ends).
const MAX_PAGES: u32 = 1_000;

/// The result of a catalogue check.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogueCheck {
    /// When the check ran.
    pub checked_at: SystemTime,
    /// Configured models the catalogue does not list, sorted.
    pub unknown: Vec<ModelId>,
}

impl CatalogueCheck {
    /// Whether every configured model is in the catalogue.
    pub fn all_known(&self) -> bool {
        self.unknown.is_empty()
    }
}

/// Reads the catalogue at `models_uri` through `transport`, page by page until every
/// model of `configured` is found or the pages end, and lists the ones it lacks.
///
/// Only the configured models are kept: a catalogue of any size costs one page at a
/// time (each at most `max_response_bytes`), never the whole list. Every page is read
/// before `deadline`, one deadline for the whole check: a slow catalogue cannot hold
/// up a start for a deadline per page.
pub(crate) async fn check<'a>(
    transport: &Transport,
    models_uri: &str,
    configured: impl IntoIterator<Item = &'a ModelId>,
    deadline: Instant,
) -> Result<CatalogueCheck, TransportError> {
    let mut missing: BTreeSet<&ModelId> = configured.into_iter().collect();
    for page in 1..=MAX_PAGES {
        if missing.is_empty() {
            break;
        }
        let url = format!("{models_uri}?pageNumber={page}&pageSize={PAGE_SIZE}");
        let uri: Uri = transport.client().check_url(&url)?;
        let answer = transport
            .execute(Call::get(uri, ids::random().to_string()).deadline(deadline))
            .await?;
        let listing: ModelEntityListing = answer.json()?;
        for entity in &listing.entities {
            missing.retain(|m| m.as_str() != entity.id.as_str());
        }
        // The page asked for counts, not the one the answer names (which it may leave
        // out): a gateway that ignores `pageNumber` (answering page 1 each time with a
        // `pageCount` above it) would otherwise be asked for every page up to
        // `MAX_PAGES`.
        if page >= listing.page_count || listing.entities.is_empty() {
            break;
        }
    }
    Ok(CatalogueCheck {
        checked_at: SystemTime::now(),
        unknown: missing.into_iter().cloned().collect(),
    })
}

/// The last check's result, shared by every clone of a router.
#[derive(Debug, Default)]
pub(crate) struct LastCheck(Mutex<Option<CatalogueCheck>>);

impl LastCheck {
    /// The last result, if a check ran.
    pub(crate) fn get(&self) -> Option<CatalogueCheck> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Keeps `check` as the last result.
    pub(crate) fn set(&self, check: CatalogueCheck) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(check);
    }
}
