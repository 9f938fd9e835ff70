//! The simulator's shared state: clients and tokens, the catalogue, behaviours and
//! scripts, the request log and counters.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use gateway_model::ModelEntity;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::behaviour::{Behaviour, RateLimit, Scripted, Target};
use crate::check;
use crate::limit::{ClientLimits, Windows};
use crate::locks::{lock, read, write};
use crate::record::{LiveCounters, Recorder};

/// The longest a catalogue page may be held back ([`SimHandle::set_catalogue_delay`]).
///
/// [`SimHandle::set_catalogue_delay`]: crate::SimHandle::set_catalogue_delay
pub(crate) const MAX_CATALOGUE_DELAY: Duration = Duration::from_secs(600);

/// One granted access token.
pub(crate) struct TokenInfo {
    /// The OAuth client it was granted to.
    pub(crate) client_id: String,
    pub(crate) expires_at: Instant,
    pub(crate) revoked: bool,
}

/// A bearer token that may be used, and the client it was granted to.
pub(crate) struct Bearer {
    pub(crate) token: String,
    pub(crate) client_id: String,
}

/// Why a bearer token is refused.
pub(crate) enum TokenProblem {
    Missing,
    Unknown,
    Expired,
    Revoked,
}

/// Behaviours by target, as set by the builder or the admin API.
#[derive(Clone, Default)]
pub(crate) struct Behaviours {
    pub(crate) global: Behaviour,
    pub(crate) models: HashMap<String, Behaviour>,
}

impl Behaviours {
    /// The behaviour for `model`: its own, or the global one.
    pub(crate) fn for_model(&self, model: &str) -> &Behaviour {
        self.models.get(model).unwrap_or(&self.global)
    }
}

/// One-shot scripted answers by target.
#[derive(Default)]
pub(crate) struct Scripts {
    queues: HashMap<Target, VecDeque<Scripted>>,
    /// The pending answers' [`Scripted::weight`]s, summed.
    bytes: usize,
}

impl Scripts {
    pub(crate) fn push(&mut self, target: Target, answers: impl IntoIterator<Item = Scripted>) {
        let mut answers = answers.into_iter().peekable();
        if answers.peek().is_none() {
            return;
        }
        let queue = self.queues.entry(target).or_default();
        for answer in answers {
            self.bytes = self.bytes.saturating_add(answer.weight());
            queue.push_back(answer);
        }
    }

    /// The next answer of `target`'s queue, which goes once it is empty (so the map of
    /// queues holds only targets with answers pending).
    fn pop(&mut self, target: &Target) -> Option<Scripted> {
        let queue = self.queues.get_mut(target)?;
        let next = queue.pop_front();
        if queue.is_empty() {
            self.queues.remove(target);
        }
        self.taken(next)
    }

    /// `answer`, taken off its queue, no longer counted.
    fn taken(&mut self, answer: Option<Scripted>) -> Option<Scripted> {
        if let Some(answer) = &answer {
            self.bytes = self.bytes.saturating_sub(answer.weight());
        }
        answer
    }

    /// The next scripted answer for a prompt call to `model` (its own queue first, then
    /// the global one), or for the token endpoint.
    pub(crate) fn next_for_model(&mut self, model: &str) -> Option<Scripted> {
        if self.queues.is_empty() {
            return None;
        }
        if let Some(answer) = self.pop(&Target::Model(model.to_owned())) {
            return Some(answer);
        }
        self.pop(&Target::Global)
    }

    pub(crate) fn next_for_token(&mut self) -> Option<Scripted> {
        self.pop(&Target::Token)
    }

    pub(crate) fn pending(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }

    /// The bytes the pending answers hold ([`Scripted::weight`]).
    pub(crate) fn pending_bytes(&self) -> usize {
        self.bytes
    }
}

/// Everything the handlers share.
pub(crate) struct State {
    pub(crate) seed: u64,
    pub(crate) started: Instant,
    pub(crate) clients: HashMap<String, String>,
    pub(crate) token_lifetime: RwLock<Duration>,
    /// How long each catalogue page takes to answer (at most [`MAX_CATALOGUE_DELAY`]).
    pub(crate) catalogue_delay: RwLock<Duration>,
    pub(crate) tokens: RwLock<HashMap<String, TokenInfo>>,
    pub(crate) catalogue: RwLock<BTreeMap<String, ModelEntity>>,
    pub(crate) behaviours: RwLock<Behaviours>,
    pub(crate) scripts: Mutex<Scripts>,
    /// Prompt-call windows per bearer token (`Behaviour::rate_limit`).
    pub(crate) windows: Windows,
    /// The limits per OAuth client.
    pub(crate) client_limits: RwLock<ClientLimits>,
    /// Prompt-call windows per OAuth client.
    pub(crate) client_windows: Windows,
    /// Token-grant windows per OAuth client.
    pub(crate) token_windows: Windows,
    pub(crate) recorder: Recorder,
    pub(crate) counters: LiveCounters,
    pub(crate) seq: AtomicU64,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// How long a request's body may take to arrive once its headers are in (the
    /// connection timeout), if bounded.
    pub(crate) body_timeout: Option<Duration>,
    /// What `reset` goes back to.
    pub(crate) initial_catalogue: BTreeMap<String, ModelEntity>,
    pub(crate) initial_behaviours: Behaviours,
    pub(crate) initial_token_lifetime: Duration,
    pub(crate) initial_client_limits: ClientLimits,
}

impl State {
    /// A fresh sequence number (request order).
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// A deterministic pseudo-random `u64` for sequence number `n` under this seed.
    pub(crate) fn random(&self, n: u64, stream: u64) -> u64 {
        splitmix64(self.seed ^ splitmix64(n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream))
    }

    /// A deterministic draw in `[0, 1)`.
    pub(crate) fn unit(&self, n: u64, stream: u64) -> f64 {
        (self.random(n, stream) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A UUID-shaped id derived from the seed and `n` (cheap: no system randomness).
    pub(crate) fn uuid(&self, n: u64, stream: u64) -> uuid::Uuid {
        let hi = u128::from(self.random(n, stream));
        let lo = u128::from(self.random(n, stream ^ 0xA5A5));
        uuid::Builder::from_random_bytes(((hi << 64) | lo).to_be_bytes()).into_uuid()
    }

    /// Grants a token to `client_id`.
    pub(crate) fn grant(&self, n: u64, client_id: &str) -> (String, Duration) {
        // Clamped where it is set too; here it bounds the sum below whatever was stored.
        let lifetime = check::clamp_token_lifetime(*read(&self.token_lifetime));
        let token = format!("sim-{:016x}{:016x}", self.random(n, 1), self.random(n, 2));
        let now = Instant::now();
        let mut tokens = write(&self.tokens);
        if tokens.len() >= check::MAX_LIVE_TOKENS {
            tokens.retain(|_, t| t.expires_at > now && !t.revoked);
            if tokens.len() >= check::MAX_LIVE_TOKENS
                && let Some(first) = tokens
                    .iter()
                    .min_by_key(|(_, t)| t.expires_at)
                    .map(|(token, _)| token.clone())
            {
                tokens.remove(&first);
            }
        }
        tokens.insert(
            token.clone(),
            TokenInfo {
                client_id: client_id.to_owned(),
                // A token that cannot expire on this clock is born expired: never a panic.
                expires_at: now.checked_add(lifetime).unwrap_or(now),
                revoked: false,
            },
        );
        (token, lifetime)
    }

    /// Checks an `Authorization` header value.
    pub(crate) fn check_bearer(&self, header: Option<&str>) -> Result<Bearer, TokenProblem> {
        let token = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(TokenProblem::Missing)?;
        let tokens = read(&self.tokens);
        let info = tokens.get(token).ok_or(TokenProblem::Unknown)?;
        if info.revoked {
            Err(TokenProblem::Revoked)
        } else if info.expires_at <= Instant::now() {
            Err(TokenProblem::Expired)
        } else {
            Ok(Bearer {
                token: token.to_owned(),
                client_id: info.client_id.clone(),
            })
        }
    }

    /// Revokes every token granted so far.
    pub(crate) fn revoke_all(&self) -> usize {
        let now = Instant::now();
        let mut tokens = write(&self.tokens);
        let mut revoked = 0;
        for token in tokens.values_mut() {
            if token.expires_at > now && !token.revoked {
                revoked += 1;
            }
            token.revoked = true;
        }
        revoked
    }

    /// Milliseconds since start on tokio's clock.
    pub(crate) fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// Sets the prompt-call limit per OAuth client, starting every client's window afresh.
    pub(crate) fn set_client_rate_limit(&self, limit: Option<RateLimit>) {
        write(&self.client_limits).requests = limit;
        self.client_windows.clear();
    }

    /// Sets the token-grant limit per OAuth client, starting every client's window afresh.
    pub(crate) fn set_token_rate_limit(&self, limit: Option<RateLimit>) {
        write(&self.client_limits).tokens = limit;
        self.token_windows.clear();
    }

    /// Resets the log, counters, scripts, rate-limit windows and limits, behaviours, the
    /// catalogue and its delay, and the token lifetime (tokens already granted stay valid).
    pub(crate) fn reset(&self) {
        *write(&self.catalogue) = self.initial_catalogue.clone();
        *write(&self.catalogue_delay) = Duration::ZERO;
        self.recorder.clear();
        self.counters.reset();
        *lock(&self.scripts) = Scripts::default();
        self.windows.clear();
        self.client_windows.clear();
        self.token_windows.clear();
        *write(&self.client_limits) = self.initial_client_limits;
        *write(&self.behaviours) = self.initial_behaviours.clone();
        *write(&self.token_lifetime) = self.initial_token_lifetime;
    }

    /// Resolves once the simulator is shutting down.
    pub(crate) async fn shutting_down(&self) {
        let mut rx = self.shutdown.clone();
        // An error means the sender is gone: the simulator is gone too.
        let _ = rx.wait_for(|down| *down).await;
    }
}

/// `SplitMix64`: a tiny, well-mixed, deterministic 64-bit hash.
pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a script of no answers made a queue, and an emptied queue stayed, so
    /// a long-running simulator's map of queues grew with every target ever scripted.
    #[test]
    fn only_targets_with_answers_pending_keep_a_queue() {
        let mut scripts = Scripts::default();
        for n in 0..2_000 {
            scripts.push(Target::Model(format!("model-x-{n}")), []);
        }
        assert!(scripts.queues.is_empty());
        scripts.push(Target::Model("m".into()), [Scripted::Ok, Scripted::Drop]);
        scripts.push(Target::Token, [Scripted::Ok]);
        assert_eq!(scripts.queues.len(), 2);
        assert!(matches!(scripts.next_for_model("m"), Some(Scripted::Ok)));
        assert!(matches!(scripts.next_for_model("m"), Some(Scripted::Drop)));
        assert!(scripts.next_for_token().is_some());
        assert!(scripts.queues.is_empty(), "emptied queues go");
        assert_eq!((scripts.pending(), scripts.pending_bytes()), (0, 0));
    }
}
