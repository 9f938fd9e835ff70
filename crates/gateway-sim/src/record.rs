//! What the simulator saw: a bounded log of requests and counters per endpoint.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// One request as the simulator received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedRequest {
    /// Order of arrival, from 0.
    pub seq: u64,
    /// Milliseconds since the simulator started (on tokio's clock, so paused-clock tests see
    /// virtual time).
    pub at_ms: f64,
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lowercase, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body, as UTF-8 (lossy).
    pub body: String,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in the order received.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// The `X-Genesys-Request-Id` header.
    pub fn request_id(&self) -> Option<&str> {
        self.header("x-genesys-request-id")
    }

    /// The `modelId` of a prompt body.
    pub fn model_id(&self) -> Option<String> {
        self.json()?.get("modelId")?.as_str().map(str::to_owned)
    }
}

/// The most bytes of requests the log keeps (bodies, paths and headers as recorded),
/// whatever its capacity: 10,000 bodies near the 512,000-byte limit would take gigabytes.
pub const MAX_RECORDED_BYTES: usize = 128 << 20;

impl RecordedRequest {
    /// About how many bytes this request holds in the log, or takes in the answer of
    /// `GET /__admin/requests`, whichever is more: each header with its pair of strings
    /// (two allocations), the body as JSON writes it (a control byte as six).
    fn size(&self) -> usize {
        const PER_HEADER: usize = std::mem::size_of::<(String, String)>() + 2 * MIN_ALLOCATION;
        let headers = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + PER_HEADER)
            .fold(0, usize::saturating_add);
        std::mem::size_of::<Self>()
            .saturating_add(self.method.len())
            .saturating_add(self.path.len())
            .saturating_add(headers)
            .saturating_add(json_len(&self.body))
    }
}

/// The least an allocation takes (glibc's smallest chunk).
const MIN_ALLOCATION: usize = 32;

/// The length of `text` written as a JSON string's content: a control character as an
/// escape of two or six bytes, a quote or backslash as two.
fn json_len(text: &str) -> usize {
    text.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..0x20 => 6,
            _ => 1,
        })
        .fold(0, usize::saturating_add)
}

/// A ring buffer of the most recent requests, bounded in count and in bytes.
pub(crate) struct Recorder {
    capacity: usize,
    log: Mutex<Log>,
    evicted: AtomicU64,
}

/// The requests kept, and the bytes they hold.
#[derive(Default)]
struct Log {
    requests: VecDeque<RecordedRequest>,
    bytes: usize,
}

impl Recorder {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            log: Mutex::new(Log::default()),
            evicted: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    pub(crate) fn push(&self, request: RecordedRequest) {
        if !self.enabled() {
            return;
        }
        let size = request.size();
        let mut log = self.lock();
        while log.requests.len() >= self.capacity
            || (!log.requests.is_empty() && log.bytes.saturating_add(size) > MAX_RECORDED_BYTES)
        {
            let Some(oldest) = log.requests.pop_front() else {
                break;
            };
            log.bytes = log.bytes.saturating_sub(oldest.size());
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        log.bytes = log.bytes.saturating_add(size);
        log.requests.push_back(request);
    }

    pub(crate) fn snapshot(&self) -> Vec<RecordedRequest> {
        self.lock().requests.iter().cloned().collect()
    }

    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    pub(crate) fn clear(&self) {
        *self.lock() = Log::default();
        self.evicted.store(0, Ordering::Relaxed);
    }
}

/// Counters the simulator keeps, as reported by [`crate::SimHandle::counters`] and
/// `GET /__admin/counters`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    /// Calls to `POST /oauth/token`.
    pub token_requests: u64,
    /// Tokens granted (token requests answered 200).
    pub token_grants: u64,
    /// Token requests refused with 429 by the token limit per OAuth client.
    pub token_rate_limited: u64,
    /// Calls to `POST /api/v2/ai/gateway/prompts`.
    pub prompt_requests: u64,
    /// Prompt calls answered 200.
    pub prompt_successes: u64,
    /// Prompt calls refused with 429 by the request limit per OAuth client.
    pub client_rate_limited: u64,
    /// Calls to the model catalogue.
    pub model_requests: u64,
    /// Calls to anything else (admin calls are not counted).
    pub other_requests: u64,
    /// Calls dropped without an answer: over HTTP/1.1 their connection is closed; over
    /// HTTP/2 their stream is reset (`INTERNAL_ERROR`), the connection staying open for
    /// the others.
    pub dropped_connections: u64,
    /// Connections accepted (TCP; one HTTP/2 connection carries many calls).
    #[serde(default)]
    pub connections: u64,
    /// Answers by status (every endpoint but admin).
    pub by_status: BTreeMap<u16, u64>,
    /// Prompt calls being handled now.
    pub prompts_in_flight: i64,
    /// The most prompt calls ever handled at once (since start or reset).
    pub max_prompts_in_flight: i64,
    /// Requests dropped from the bounded request log.
    pub log_evicted: u64,
}

/// The live counters.
#[derive(Default)]
pub(crate) struct LiveCounters {
    pub(crate) token_requests: AtomicU64,
    pub(crate) token_grants: AtomicU64,
    pub(crate) token_rate_limited: AtomicU64,
    pub(crate) prompt_requests: AtomicU64,
    pub(crate) prompt_successes: AtomicU64,
    pub(crate) client_rate_limited: AtomicU64,
    pub(crate) model_requests: AtomicU64,
    pub(crate) other_requests: AtomicU64,
    pub(crate) dropped_connections: AtomicU64,
    pub(crate) connections: AtomicU64,
    pub(crate) in_flight: AtomicI64,
    pub(crate) max_in_flight: AtomicI64,
    by_status: StatusCounts,
}

/// One counter per HTTP status code (100 to 999: scripts may answer any status from 200
/// to 999), lock-free.
struct StatusCounts([AtomicU64; 900]);

impl Default for StatusCounts {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl LiveCounters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn status(&self, status: u16) {
        if let Some(slot) = status
            .checked_sub(100)
            .and_then(|i| self.by_status.0.get(usize::from(i)))
        {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Marks a prompt call as in flight until the guard drops (also when the client
    /// disconnects and the handler is cancelled).
    pub(crate) fn enter(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(self)
    }

    pub(crate) fn snapshot(&self, log_evicted: u64) -> Counters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let by_status = self
            .by_status
            .0
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let n = get(c);
                (n > 0).then(|| (u16::try_from(i).unwrap_or(0) + 100, n))
            })
            .collect();
        Counters {
            token_requests: get(&self.token_requests),
            token_grants: get(&self.token_grants),
            token_rate_limited: get(&self.token_rate_limited),
            prompt_requests: get(&self.prompt_requests),
            prompt_successes: get(&self.prompt_successes),
            client_rate_limited: get(&self.client_rate_limited),
            model_requests: get(&self.model_requests),
            other_requests: get(&self.other_requests),
            dropped_connections: get(&self.dropped_connections),
            connections: get(&self.connections),
            by_status,
            prompts_in_flight: self.in_flight.load(Ordering::SeqCst),
            max_prompts_in_flight: self.max_in_flight.load(Ordering::SeqCst),
            log_evicted,
        }
    }

    pub(crate) fn reset(&self) {
        for c in [
            &self.token_requests,
            &self.token_grants,
            &self.token_rate_limited,
            &self.prompt_requests,
            &self.prompt_successes,
            &self.client_rate_limited,
            &self.model_requests,
            &self.other_requests,
            &self.dropped_connections,
            &self.connections,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        for c in &self.by_status.0 {
            c.store(0, Ordering::Relaxed);
        }
        self.max_in_flight
            .store(self.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

/// Guard for one prompt call in flight.
pub(crate) struct InFlight<'a>(&'a LiveCounters);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(seq: u64, body_bytes: usize) -> RecordedRequest {
        RecordedRequest {
            seq,
            at_ms: 0.0,
            method: "POST".into(),
            path: "/api/v2/ai/gateway/prompts".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: "x".repeat(body_bytes),
        }
    }

    /// Regression: the log's byte bound counted a body of control bytes at a sixth of
    /// what `GET /__admin/requests` answers with it (800 MB at the bound), and a header
    /// by its text alone (490 one-letter headers, 80 bytes each to keep, as 980 bytes).
    #[test]
    fn a_requests_size_covers_its_escaped_body_and_each_header() {
        let mut controls = request(0, 0);
        controls.body = "\u{1}".repeat(100_000);
        let answered = serde_json::to_string(&controls.body).unwrap().len();
        assert!(
            controls.size() >= answered,
            "{} < {answered}",
            controls.size()
        );

        let mut headers = request(0, 0);
        headers.headers = vec![("x".into(), String::new()); 490];
        let kept = 490 * (std::mem::size_of::<(String, String)>() + 2 * MIN_ALLOCATION);
        assert!(headers.size() >= kept, "{} < {kept}", headers.size());
        assert_eq!(
            request(0, 10).size() - request(0, 0).size(),
            10,
            "plain text as is"
        );
    }

    /// Regression: the log was bounded by count only, so 10,000 bodies near the
    /// 512,000-byte limit (each up to three times larger once read as lossy UTF-8)
    /// took gigabytes.
    #[test]
    fn the_log_keeps_the_newest_requests_within_its_byte_bound() {
        let recorder = Recorder::new(10_000);
        let body = 1 << 20;
        for seq in 0..200 {
            recorder.push(request(seq, body));
        }
        let kept = recorder.snapshot();
        let bytes: usize = kept.iter().map(RecordedRequest::size).sum();
        assert!(bytes <= MAX_RECORDED_BYTES, "{bytes}");
        assert!(
            kept.len() >= MAX_RECORDED_BYTES / body - 1,
            "{}",
            kept.len()
        );
        assert_eq!(kept.last().map(|r| r.seq), Some(199), "the newest is kept");
        assert_eq!(recorder.evicted(), 200 - kept.len() as u64);
        // Small requests still fill it up to its count.
        let recorder = Recorder::new(3);
        for seq in 0..5 {
            recorder.push(request(seq, 10));
        }
        let seqs: Vec<u64> = recorder.snapshot().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [2, 3, 4]);
    }

    #[test]
    fn every_status_a_script_may_answer_is_counted() {
        let counters = LiveCounters::default();
        for status in [100, 200, 599, 600, 999, 1000] {
            counters.status(status);
        }
        let by_status = counters.snapshot(0).by_status;
        let counted: Vec<u16> = by_status.keys().copied().collect();
        assert_eq!(counted, [100, 200, 599, 600, 999]);
    }
}
