//! One access token for the fleet, cached in Redis and fetched by one replica at a time.

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

/// The fleet's token source.
pub(crate) struct FleetTokens {
    link: Arc<RedisLink>,
    local: Arc<dyn TokenSource>,
    /// The shared token as this replica last read it, until its Redis copy expires: a
    /// call asks Redis only when it has none.
    copy: Mutex<Option<(AccessToken, Instant)>>,
    /// One call of this replica at a time goes to Redis for the token.
    flight: tokio::sync::Mutex<()>,
    /// The token this replica saw refused (a 401): never taken from Redis again.
    refused: Mutex<Option<AccessToken>>,
    get_with_ttl: Script,
    take: Script,
    compare_and_delete: Script,
}

impl FleetTokens {
    pub(crate) fn new(link: Arc<RedisLink>, local: Arc<dyn TokenSource>) -> Self {
        Self {
            link,
            local,
            copy: Mutex::new(None),
            flight: tokio::sync::Mutex::new(()),
            refused: Mutex::new(None),
            get_with_ttl: Script::new(GET_WITH_TTL),
            take: Script::new(TAKE),
            compare_and_delete: Script::new(COMPARE_AND_DELETE),
        }
    }

    /// This replica's copy of the shared token, while it lasts.
    fn copy(&self) -> Option<AccessToken> {
        let copy = self.copy.lock().unwrap_or_else(PoisonError::into_inner);
        copy.as_ref()
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(token, _)| token.clone())
    }

    /// The shared token: this replica's copy, or Redis' (fetched once per replica).
    async fn token_for_fleet(&self) -> Result<AccessToken, Stop> {
        if let Some(token) = self.copy() {
            return Ok(token);
        }
        let _flight = self.flight.lock().await;
        if let Some(token) = self.copy() {
            return Ok(token);
        }
        let (token, left) = self.shared().await?;
        *self.copy.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((token.clone(), gateway_transport::clock::from_now(left)));
        Ok(token)
    }

    /// Redis' copy of the token, or one fetched under the fleet's lock; with how long
    /// it stays shared.
    async fn shared(&self) -> Result<(AccessToken, Duration), Stop> {
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
                let fetched = self.fetch_and_share(&key).await;
                let _: Result<i64, _> = self
                    .link
                    .eval(&self.compare_and_delete, &[&lock], &[me])
                    .await;
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

    /// Under the lock: fetches a token through the local source and shares it for as
    /// long as it stays usable.
    async fn fetch_and_share(&self, key: &str) -> Result<(AccessToken, Duration), Stop> {
        if let Some(shared) = self.cached(key).await? {
            return Ok(shared);
        }
        let token = self.local.token().await.map_err(Stop::Failed)?;
        let share = self.local.valid_for(&token).unwrap_or(DEFAULT_SHARE);
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
    /// The copy kept in memory while it lasts, as [`TokenSource::token`] would give first.
    fn ready_token(&self) -> Option<AccessToken> {
        self.copy()
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
        let mut copy = self.copy.lock().unwrap_or_else(PoisonError::into_inner);
        if copy.as_ref().is_some_and(|(t, _)| t.same_as(token)) {
            *copy = None;
        }
        drop(copy);
        *self.refused.lock().unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
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
