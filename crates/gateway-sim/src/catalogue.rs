//! `GET /api/v2/ai/models` (paged) and `GET /api/v2/ai/models/{modelId}`.

use gateway_model::{CODE_NOT_FOUND, ModelEntity, ModelEntityListing};
use http::StatusCode;

use http::Response;

use crate::locks::read;
use crate::reply::{self, Body, Received};
use crate::state::State;

/// Default and largest page sizes, as Genesys Cloud uses.
const DEFAULT_PAGE_SIZE: u32 = 25;
const MAX_PAGE_SIZE: u32 = 500;

/// A catalogue entry for `id` with the simulator's defaults.
pub(crate) fn entity(id: &str) -> ModelEntity {
    ModelEntity {
        id: id.into(),
        name: Some(id.to_owned()),
        provider: Some("gateway-sim".into()),
        state: Some("active".into()),
        max_output_tokens: Some(8192),
        self_uri: Some(format!("/api/v2/ai/models/{id}")),
        extra: serde_json::Map::new(),
    }
}

/// Lists one page of the catalogue.
pub(crate) fn list(state: &State, request: &Received) -> Response<Body> {
    if state.check_bearer(request.header("authorization")).is_err() {
        return unauthorized(state, request.seq);
    }
    let (mut page_number, mut page_size) = (1u32, DEFAULT_PAGE_SIZE);
    for pair in request.query.as_deref().unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("pageNumber", v)) => page_number = v.parse().unwrap_or(1).max(1),
            Some(("pageSize", v)) => {
                page_size = v
                    .parse()
                    .unwrap_or(DEFAULT_PAGE_SIZE)
                    .clamp(1, MAX_PAGE_SIZE);
            }
            _ => {}
        }
    }
    let catalogue = read(&state.catalogue);
    let total = catalogue.len() as u64;
    let page_count = u32::try_from(total.div_ceil(u64::from(page_size))).unwrap_or(u32::MAX);
    // The page number comes from the query: saturate instead of overflowing.
    let size = usize::try_from(page_size).unwrap_or(usize::MAX);
    let skip = usize::try_from(page_number - 1)
        .unwrap_or(usize::MAX)
        .saturating_mul(size);
    let entities: Vec<ModelEntity> = catalogue.values().skip(skip).take(size).cloned().collect();
    let uri = |n: u32| format!("/api/v2/ai/models?pageNumber={n}&pageSize={page_size}");
    let listing = ModelEntityListing {
        entities,
        page_number,
        page_size,
        total,
        page_count,
        next_uri: (page_number < page_count).then(|| uri(page_number + 1)),
        self_uri: Some(uri(page_number)),
        extra: serde_json::Map::new(),
    };
    reply::json(state, request.seq, StatusCode::OK, &listing)
}

/// Returns one model, or 404.
pub(crate) fn get(state: &State, request: &Received, id: &str) -> Response<Body> {
    if state.check_bearer(request.header("authorization")).is_err() {
        return unauthorized(state, request.seq);
    }
    match read(&state.catalogue).get(id) {
        Some(entity) => reply::json(state, request.seq, StatusCode::OK, entity),
        None => reply::error(
            state,
            request.seq,
            StatusCode::NOT_FOUND,
            CODE_NOT_FOUND,
            &format!("Model {id} was not found"),
        ),
    }
}

fn unauthorized(state: &State, seq: u64) -> Response<Body> {
    reply::error(
        state,
        seq,
        StatusCode::UNAUTHORIZED,
        gateway_model::CODE_BAD_CREDENTIALS,
        "Invalid login credentials.",
    )
}
