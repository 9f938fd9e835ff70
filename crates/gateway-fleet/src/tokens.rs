//! One access token for the fleet, cached in Redis and fetched by one replica at a time.
//!
//! A replica keeps a copy of the shared token and trusts it without asking Redis for
//! [`TOKEN_RECHECK`] at most (never past the token's expiry in Redis). The next call after
//! that reads Redis again: it adopts the token Redis holds, or, when Redis lost it (a
//! restart, an eviction, a value no replica writes), shares its still-valid copy again
//! under the fetch lock rather than logging in, so the next replica to start finds that
//! token and the fleet keeps one. With Redis unavailable, a valid copy stands.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gateway_transport::{AccessToken, BoxFuture, MAX_ACCESS_TOKEN_BYTES, TokenError, TokenSource};
use redis::Script;
use tokio::time::Instant;

use crate::redis_link::{RedisLink, Unavailable};
use crate::scripts::{COMPARE_AND_DELETE, TAKE, millis, owner_value};

/// How often a replica waiting for another's fetch looks for the token.
const POLL: Duration = Duration::from_millis(20);
/// How long a token is shared when its source does not say how long it lasts.
const DEFAULT_SHARE: Duration = Duration::from_secs(60);
/// Tokens about to expire are not shared.
const MIN_SHARE: Duration = Duration::from_secs(1);

/// The longest a token is shared: Genesys Cloud's longest token lifetime (48 h). A
/// longer expiry read from Redis is not one a replica wrote.
const MAX_SHARE: Duration = Duration::from_secs(172_800);

/// How long a replica trusts its copy of the shared token without asking Redis: within
/// this, a Redis that restarted empty has the token shared again by the next call of a
/// replica holding it, before another replica logs in for a second one.
pub const TOKEN_RECHECK: Duration = Duration::from_secs(30);

/// The shared token and how many milliseconds it has left; nothing when the key holds
/// what no replica writes (another type, or more than `ARGV[1]` bytes).
const GET_WITH_TTL: &str = r"
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'string' or redis.call('STRLEN', KEYS[1]) > tonumber(ARGV[1]) then
  return {false, -2}
end
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
";

/// What stops the shared path: Redis (use the local token) or the login itself.
enum Stop {
    Local,
    Failed(TokenError),
}

impl From<Unavailable> for Stop {
    fn from(_: Unavailable) -> Self {
        Stop::Local
    }
}

/// This replica's copy of the shared token, as held in its memory.
#[derive(Clone)]
struct Held {
    token: AccessToken,
    /// When its Redis copy expires (as last read or written): the copy is valid until then.
    until: Instant,
    /// Until when it is used without asking Redis: the recheck interval after it was last
    /// read, written or kept, and never past `until`.
    trusted_until: Instant,
}

impl Held {
    /// A copy of `token`, which Redis holds for `left` from now.
    fn new(token: AccessToken, left: Duration, recheck: Duration) -> Self {
        let until = gateway_transport::clock::from_now(left);
        Self {
            token,
            until,
            trusted_until: gateway_transport::clock::from_now(recheck).min(until),
        }
    }

    /// The same copy, trusted for `recheck` more (while it lasts).
    fn renewed(self, recheck: Duration) -> Self {
        let trusted_until = gateway_transport::clock::from_now(recheck).min(self.until);
        Self {
            trusted_until,
            ..self
        }
    }

    /// How long it stays valid from now.
    fn left(&self) -> Duration {
        self.until.saturating_duration_since(Instant::now())
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

/// The fleet's token source.
pub(crate) struct FleetTokens {
    link: Arc<RedisLink>,
    local: Arc<dyn TokenSource>,
    /// The shared token as this replica last read or shared it.
    copy: Mutex<Option<Held>>,
    /// How long the copy is used without asking Redis ([`TOKEN_RECHECK`] by default).
    recheck: Duration,
    /// One call of this replica at a time goes to Redis for the token.
    flight: tokio::sync::Mutex<()>,
    /// The token this replica saw refused (a 401): never taken from Redis again.
    refused: Mutex<Option<AccessToken>>,
    get_with_ttl: Script,
    take: Script,
    compare_and_delete: Script,
}

impl FleetTokens {
    pub(crate) fn new(
        link: Arc<RedisLink>,
        local: Arc<dyn TokenSource>,
        recheck: Duration,
    ) -> Self {
        Self {
            link,
            local,
            copy: Mutex::new(None),
            recheck,
            flight: tokio::sync::Mutex::new(()),
            refused: Mutex::new(None),
            get_with_ttl: Script::new(GET_WITH_TTL),
            take: Script::new(TAKE),
            compare_and_delete: Script::new(COMPARE_AND_DELETE),
        }
    }

    /// This replica's copy of the shared token, while it is used without asking Redis.
    fn trusted(&self) -> Option<AccessToken> {
        self.held()
            .filter(|c| Instant::now() < c.trusted_until)
            .map(|c| c.token)
    }

    /// This replica's copy of the shared token, whether trusted or due a recheck.
    fn held(&self) -> Option<Held> {
        self.copy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The shared token: this replica's trusted copy, or Redis' (asked by one call of
    /// this replica at a time, while the others use a copy still valid).
    async fn token_for_fleet(&self) -> Result<AccessToken, Stop> {
        if let Some(token) = self.trusted() {
            return Ok(token);
        }
        let _flight = if let Ok(flight) = self.flight.try_lock() {
            flight
        } else {
            if let Some(copy) = self.held().filter(|c| !c.left().is_zero()) {
                return Ok(copy.token);
            }
            self.flight.lock().await
        };
        if let Some(token) = self.trusted() {
            return Ok(token);
        }
        // A copy worth sharing again: valid a while yet, and not refused (a refused copy
        // is dropped, but a call may have read it before).
        let mine = self
            .held()
            .filter(|c| c.left() >= MIN_SHARE && !self.is_refused(&c.token));
        let copy = match (self.shared(mine.as_ref()).await, mine) {
            (Ok((token, left)), _) => Held::new(token, left, self.recheck),
            // Redis is unavailable: the valid copy stands, and Redis is asked again later.
            (Err(Stop::Local), Some(mine)) => mine.renewed(self.recheck),
            (Err(stop), _) => return Err(stop),
        };
        let token = copy.token.clone();
        let mut held = self.copy.lock().unwrap_or_else(PoisonError::into_inner);
        // A 401 for it may have come while Redis was asked: a refused token is not kept,
        // and this call goes to the local source.
        if self.is_refused(&token) {
            *held = None;
            return Err(Stop::Local);
        }
        *held = Some(copy);
        Ok(token)
    }

    /// Redis' copy of the token, or, under the fleet's lock, `mine` (this replica's valid
    /// copy) or else one fetched through the local source, shared; with how long it stays
    /// shared.
    async fn shared(&self, mine: Option<&Held>) -> Result<(AccessToken, Duration), Stop> {
        let key = self.link.key("token");
        let lock = self.link.key("token:lock");
        let lock_ms = millis(self.link.token_lock());
        let give_up = gateway_transport::clock::from_now(self.link.token_lock());
        loop {
            if let Some(token) = self.cached(&key).await? {
                return Ok(token);
            }
            let me = owner_value();
            let taken: i64 = self
                .link
                .eval(&self.take, &[&lock], &[me.clone(), lock_ms.to_string()])
                .await?;
            if taken == 1 {
                let held = TokenLock {
                    link: Arc::clone(&self.link),
                    script: self.compare_and_delete.clone(),
                    key: lock.clone(),
                    owner: Some(me),
                };
                let fetched = self.fetch_and_share(&key, mine).await;
                held.release().await;
                return fetched;
            }
            if Instant::now() >= give_up {
                return Err(Stop::Local);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Redis' copy of the token and its time left, unless it is the one this replica
    /// saw refused.
    async fn cached(&self, key: &str) -> Result<Option<(AccessToken, Duration)>, Stop> {
        let longest = MAX_ACCESS_TOKEN_BYTES.to_string();
        let (bytes, left_ms): (Option<Vec<u8>>, i64) = self
            .link
            .eval(&self.get_with_ttl, &[key], &[longest])
            .await?;
        let left = Duration::from_millis(u64::try_from(left_ms).unwrap_or(0)).min(MAX_SHARE);
        Ok(bytes
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| AccessToken::new(&t))
            .filter(|t| !self.is_refused(t) && left >= MIN_SHARE)
            .map(|t| (t, left)))
    }

    /// Under the lock, unless Redis holds a usable token: shares `mine` (this replica's
    /// copy) for its time left, or else a token fetched through the local source for as
    /// long as it stays usable, over whatever unusable value the key holds.
    async fn fetch_and_share(
        &self,
        key: &str,
        mine: Option<&Held>,
    ) -> Result<(AccessToken, Duration), Stop> {
        if let Some(shared) = self.cached(key).await? {
            return Ok(shared);
        }
        let (token, share) = if let Some(copy) = mine {
            (copy.token.clone(), copy.left())
        } else {
            let token = self.local.token().await.map_err(Stop::Failed)?;
            // The local source keeps a token refused here while its forced refreshes are
            // spent: it is used locally, never shared for the fleet to adopt.
            if self.is_refused(&token) {
                return Err(Stop::Local);
            }
            let share = self.local.valid_for(&token).unwrap_or(DEFAULT_SHARE);
            (token, share)
        };
        if share >= MIN_SHARE {
            let stored: Result<Option<String>, _> = self
                .link
                .query(
                    redis::cmd("SET")
                        .arg(key)
                        .arg(token.expose())
                        .arg("PX")
                        .arg(millis(share)),
                )
                .await;
            if stored.is_err() {
                tracing::debug!("the fleet token could not be shared; it is used locally");
            }
        }
        Ok((token, share))
    }

    fn is_refused(&self, token: &AccessToken) -> bool {
        self.refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|r| r.same_as(token))
    }
}

impl TokenSource for FleetTokens {
    /// The copy kept in memory while it is trusted, as [`TokenSource::token`] would give
    /// first.
    fn ready_token(&self) -> Option<AccessToken> {
        self.trusted()
    }

    fn token(&self) -> BoxFuture<'_, Result<AccessToken, TokenError>> {
        Box::pin(async move {
            match self.token_for_fleet().await {
                Ok(token) => Ok(token),
                Err(Stop::Failed(e)) => Err(e),
                Err(Stop::Local) => self.local.token().await,
            }
        })
    }

    fn invalidate(&self, token: &AccessToken) {
        self.local.invalidate(token);
        // Refused first, then dropped: a recheck storing its copy meanwhile either sees it
        // refused or is undone here.
        *self.refused.lock().unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
        let mut copy = self.copy.lock().unwrap_or_else(PoisonError::into_inner);
        if copy.as_ref().is_some_and(|c| c.token.same_as(token)) {
            *copy = None;
        }
        drop(copy);
        // Drop the fleet's copy if it is still this token, so the next fetch is fresh.
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

    fn valid_for(&self, token: &AccessToken) -> Option<Duration> {
        self.local.valid_for(token)
    }
}
