//! A bound on the JSON values an OpenAI request body may hold, checked before it is
//! parsed ([`gateway_model::json_value_bound`]). The doors read free-form parts of a request (message `content`, parameters
//! they then refuse) into `serde_json::Value`s, which take about 80 bytes each however
//! short their JSON (`{}` is two): within the 1 MiB body cap, a body of empty objects
//! would take dozens of times its size in memory, in every call in flight at once.

/// The most JSON values an OpenAI request body may hold: far past any real request's
/// (twenty thousand messages of five values each), and about 8 MB of values at most.
pub(crate) const MAX_REQUEST_VALUES: usize = 100_000;
