//! The fleet's token as Redis holds it: read, fetched under the fleet's lock and shared,
//! and renewed ahead of its expiry by one replica while every replica goes on using it.
//!
//! Beside the token, a second key says how long it stays fresh: the fetching source's
//! refresh point (`TokenSource::refresh_in`). Once that key is gone, the first replica to
//! read the token starts a renewal in the background under the fetch lock; calls keep the
//! still-valid token meanwhile, so under traffic a rollover makes no call wait for a login.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gateway_transport::{AccessToken, MAX_ACCESS_TOKEN_BYTES, TokenError, TokenSource};
use redis::Script;
use tokio::time::Instant;

use crate::redis_link::{RedisLink, Unavailable};
use crate::scripts::{COMPARE_AND_DELETE, TAKE, millis, owner_value};

/// How often a replica waiting for another's fetch looks for the token.
const POLL: Duration = Duration::from_millis(20);
/// How long a token is shared when its source does not say how long it lasts.
const DEFAULT_SHARE: Duration = Duration::from_secs(60);
/// Tokens about to expire are not shared.
pub(crate) const MIN_SHARE: Duration = Duration::from_secs(1);
/// After a renewal that brought no new token (a failed login), how long before any
/// replica tries again: the fleet makes one such login attempt per interval, not one per
/// replica.
pub(crate) const RENEW_RETRY: Duration = Duration::from_secs(10);

/// The longest a token is shared: Genesys Cloud's longest token lifetime (48 h). A
/// longer expiry read from Redis is not one a replica wrote.
const MAX_SHARE: Duration = Duration::from_secs(172_800);

/// The shared token, how many milliseconds it has left, and how many it stays fresh
/// (`KEYS[2]`'s, below 1 when due or never written); nothing when the key holds what no
/// replica writes (another type, or more than `ARGV[1]` bytes).
const GET_WITH_TTL: &str = r"
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'string' or redis.call('STRLEN', KEYS[1]) > tonumber(ARGV[1]) then
  return {false, -2, -2}
end
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2])}
";

/// Shares the token `ARGV[1]` for `ARGV[2]` ms, fresh for `ARGV[3]` ms, in one step, if
/// the fetch lock `KEYS[3]` is still `ARGV[4]`'s (a holder whose lease lapsed mid-login
/// writes nothing over the next holder's token).
const SHARE: &str = r"
if redis.pcall('GET', KEYS[3]) ~= ARGV[4] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
return 1
";

/// Marks the shared token fresh for `ARGV[1]` ms, if the fetch lock `KEYS[2]` is still
/// `ARGV[2]`'s.
const KEEP_FRESH: &str = r"
if redis.pcall('GET', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return 1
";

/// What stops the shared path: Redis (use the local token) or the login itself.
pub(crate) enum Stop {
    Local,
    Failed(TokenError),
}

impl From<Unavailable> for Stop {
    fn from(_: Unavailable) -> Self {
        Stop::Local
    }
}

/// A token as Redis holds it (or as this replica would share it).
#[derive(Clone)]
pub(crate) struct Stored {
    pub(crate) token: AccessToken,
    /// How long it stays valid.
    pub(crate) left: Duration,
    /// How long before it is due for renewal (zero: due now).
    pub(crate) fresh: Duration,
}

impl Stored {
    /// The same token as it stands now, its times having been read at `read`.
    fn aged(&self, read: Instant) -> Self {
        let gone = read.elapsed();
        Self {
            token: self.token.clone(),
            left: self.left.saturating_sub(gone),
            fresh: self.fresh.saturating_sub(gone),
        }
    }
}

/// The fleet's token-fetch lock as this replica holds it: released when the fetch ends,
/// or, if the call holding it is dropped mid-fetch, in the background, so the other
/// replicas do not wait out its lease (`token_lock_ms`) and then each log in.
struct TokenLock {
    link: Arc<RedisLink>,
    script: Script,
    key: String,
    /// Whose lock it is; `None` once released.
    owner: Option<String>,
}

impl TokenLock {
    /// What the lock key holds while this lock has it.
    fn owner(&self) -> &str {
        self.owner.as_deref().unwrap_or_default()
    }

    /// Releases the lock if this replica still holds it.
    async fn release(mut self) {
        if let Some(owner) = self.owner.take() {
            let _: Result<i64, _> = self.link.eval(&self.script, &[&self.key], &[owner]).await;
        }
    }
}

impl Drop for TokenLock {
    fn drop(&mut self) {
        let Some(owner) = self.owner.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (link, script, key) = (
                Arc::clone(&self.link),
                self.script.clone(),
                self.key.clone(),
            );
            runtime.spawn(async move {
                let _: Result<i64, _> = link.eval(&script, &[&key], &[owner]).await;
            });
        }
    }
}

/// Clears a flag when dropped, however the task holding it ends.
struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The fleet's token in Redis, and the local source that fetches it.
pub(crate) struct TokenStore {
    link: Arc<RedisLink>,
    local: Arc<dyn TokenSource>,
    /// The token this replica saw refused (a 401): never taken from Redis or shared again.
    refused: Mutex<Option<AccessToken>>,
    /// Whether a renewal of this replica runs.
    renewing: AtomicBool,
    get_with_ttl: Script,
    take: Script,
    compare_and_delete: Script,
    share: Script,
    keep_fresh: Script,
}

impl TokenStore {
    /// Whether Redis is unreachable for now (the replica is degraded).
    pub(crate) fn degraded(&self) -> bool {
        self.link.health().is_degraded()
    }

    pub(crate) fn new(link: Arc<RedisLink>, local: Arc<dyn TokenSource>) -> Self {
        Self {
            link,
            local,
            refused: Mutex::new(None),
            renewing: AtomicBool::new(false),
            get_with_ttl: Script::new(GET_WITH_TTL),
            take: Script::new(TAKE),
            compare_and_delete: Script::new(COMPARE_AND_DELETE),
            share: Script::new(SHARE),
            keep_fresh: Script::new(KEEP_FRESH),
        }
    }

    /// The local source, which stands in while Redis is down.
    pub(crate) fn local(&self) -> &dyn TokenSource {
        &*self.local
    }

    /// Redis' copy of the token, or, under the fleet's lock, `mine` (this replica's valid
    /// copy) or else one fetched through the local source, shared. With `mine` and the
    /// lock held by another replica (logging in), it does not wait for that login:
    /// `Stop::Local`, and the valid copy stands until Redis is asked again.
    pub(crate) async fn shared(&self, mine: Option<&Stored>) -> Result<Stored, Stop> {
        let asked = Instant::now();
        let give_up = gateway_transport::clock::later(asked, self.link.token_lock());
        loop {
            if let Some(stored) = self.cached().await? {
                return Ok(stored);
            }
            if let Some(held) = self.lock().await? {
                let fetched = self.fetch_and_share(mine, asked, &held).await;
                held.release().await;
                return fetched;
            }
            if mine.is_some() || Instant::now() >= give_up {
                return Err(Stop::Local);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The fleet's token-fetch lock, if no other replica holds it.
    async fn lock(&self) -> Result<Option<TokenLock>, Unavailable> {
        let key = self.link.key("token:lock");
        let lease = millis(self.link.token_lock()).to_string();
        let me = owner_value();
        let taken: i64 = self
            .link
            .eval(&self.take, &[&key], &[me.clone(), lease])
            .await?;
        Ok((taken == 1).then(|| TokenLock {
            link: Arc::clone(&self.link),
            script: self.compare_and_delete.clone(),
            key,
            owner: Some(me),
        }))
    }

    /// Redis' copy of the token, unless it is the one this replica saw refused.
    pub(crate) async fn cached(&self) -> Result<Option<Stored>, Unavailable> {
        let keys = [self.link.key("token"), self.link.key("token:fresh")];
        let longest = MAX_ACCESS_TOKEN_BYTES.to_string();
        let (bytes, left_ms, fresh_ms): (Option<Vec<u8>>, i64, i64) = self
            .link
            .eval(&self.get_with_ttl, &[&keys[0], &keys[1]], &[longest])
            .await?;
        let ms = |ms: i64| Duration::from_millis(u64::try_from(ms).unwrap_or(0)).min(MAX_SHARE);
        let left = ms(left_ms);
        Ok(bytes
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| AccessToken::new(&t))
            .filter(|t| !self.is_refused(t) && left >= MIN_SHARE)
            .map(|token| Stored {
                token,
                left,
                // A freshness key with no expiry (none a replica writes) counts as due.
                fresh: ms(fresh_ms).min(left),
            }))
    }

    /// Under the lock, unless Redis holds a usable token: shares `mine` (this replica's
    /// copy, as it stood at `asked`) for its time left, or else a token fetched through
    /// the local source for as long as it stays usable, over whatever unusable value the
    /// key holds.
    async fn fetch_and_share(
        &self,
        mine: Option<&Stored>,
        asked: Instant,
        held: &TokenLock,
    ) -> Result<Stored, Stop> {
        if let Some(stored) = self.cached().await? {
            return Ok(stored);
        }
        // A 401 may have come for `mine` while this call waited for the lock.
        let stored = if let Some(copy) = mine.filter(|c| !self.is_refused(&c.token)) {
            // Its time left is counted from now, not from before the wait for the lock.
            copy.aged(asked)
        } else {
            let token = self.local.token().await.map_err(Stop::Failed)?;
            // The local source keeps a token refused here while its forced refreshes are
            // spent: it is used locally, never shared for the fleet to adopt.
            if self.is_refused(&token) {
                return Err(Stop::Local);
            }
            self.as_stored(token)
        };
        self.store(&stored, held).await;
        // Refused while it was being shared: taken back at once.
        if self.is_refused(&stored.token) {
            self.refuse(&stored.token);
            return Err(Stop::Local);
        }
        Ok(stored)
    }

    /// `token` from the local source, valid and fresh for as long as that source says,
    /// but at most [`MAX_SHARE`], as a shared token is read (a source may say "never
    /// expires", `Duration::MAX`, which no Redis expiry can hold).
    fn as_stored(&self, token: AccessToken) -> Stored {
        let left = self
            .local
            .valid_for(&token)
            .unwrap_or(DEFAULT_SHARE)
            .min(MAX_SHARE);
        let fresh = self.local.refresh_in(&token).unwrap_or(left).min(left);
        Stored { token, left, fresh }
    }

    /// Writes `stored` to Redis while `held` is still the fetch lock, unless it is about
    /// to expire.
    async fn store(&self, stored: &Stored, held: &TokenLock) {
        if stored.left < MIN_SHARE {
            return;
        }
        let keys = [self.link.key("token"), self.link.key("token:fresh")];
        let args = [
            stored.token.expose().to_owned(),
            millis(stored.left).to_string(),
            millis(stored.fresh).to_string(),
            held.owner().to_owned(),
        ];
        let written: Result<i64, _> = self
            .link
            .eval(&self.share, &[&keys[0], &keys[1], &held.key], &args)
            .await;
        if written.is_err() {
            tracing::debug!("the fleet token could not be shared; it is used locally");
        }
    }

    /// Starts renewing `due` (the shared token, due for renewal) in the background,
    /// unless a renewal of this replica already runs.
    pub(crate) fn renew_in_background(self: &Arc<Self>, due: &AccessToken) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.renewing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (this, due) = (Arc::clone(self), due.clone());
        runtime.spawn(async move {
            let _running = ClearOnDrop(&this.renewing);
            this.renew(&due).await;
        });
    }

    /// Under the fleet's lock, if no other replica holds it: shares a token to use instead
    /// of `due`, unless another replica did so first. Without one (a failed login), `due`
    /// stays shared and counts fresh for [`RENEW_RETRY`].
    async fn renew(&self, due: &AccessToken) {
        let Ok(Some(held)) = self.lock().await else {
            return;
        };
        let still_due = matches!(
            self.cached().await,
            Ok(Some(s)) if s.token.same_as(due) && s.fresh.is_zero()
        );
        if still_due {
            match self.local.renew(due).await {
                Ok(token) if !token.same_as(due) && !self.is_refused(&token) => {
                    self.store(&self.as_stored(token), &held).await;
                }
                Ok(_) => self.keep_fresh(RENEW_RETRY, &held).await,
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        retry_in_s = RENEW_RETRY.as_secs(),
                        "the fleet token could not be renewed; it stays in use while valid"
                    );
                    self.keep_fresh(RENEW_RETRY, &held).await;
                }
            }
        }
        held.release().await;
    }

    /// Marks the shared token fresh for `fresh` while `held` is still the fetch lock: no
    /// replica renews it meanwhile.
    async fn keep_fresh(&self, fresh: Duration, held: &TokenLock) {
        let key = self.link.key("token:fresh");
        let args = [millis(fresh).to_string(), held.owner().to_owned()];
        let _: Result<i64, _> = self
            .link
            .eval(&self.keep_fresh, &[&key, &held.key], &args)
            .await;
    }

    pub(crate) fn is_refused(&self, token: &AccessToken) -> bool {
        self.refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|r| r.same_as(token))
    }

    /// Records `token` as refused, and drops the fleet's copy if it is still this token,
    /// so the next fetch is fresh.
    pub(crate) fn refuse(&self, token: &AccessToken) {
        *self.refused.lock().unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let link = Arc::clone(&self.link);
            let script = self.compare_and_delete.clone();
            let text = token.expose().to_owned();
            runtime.spawn(async move {
                let key = link.key("token");
                let _: Result<i64, _> = link.eval(&script, &[&key], &[text]).await;
            });
        }
    }
}
