//! One access token for the fleet, cached in Redis and fetched by one replica at a time.
//!
//! A replica keeps a copy of the shared token and trusts it without asking Redis for
//! [`TOKEN_RECHECK`] at most (never past the token's expiry in Redis). The next call after
//! that reads Redis again: it adopts the token Redis holds, or, when Redis lost it (a
//! restart, an eviction, a value no replica writes), shares its still-valid copy again
//! under the fetch lock rather than logging in, so the next replica to start finds that
//! token and the fleet keeps one. With Redis unavailable, a valid copy stands. A token
//! read past its refresh point is renewed in the background ([`crate::token_store`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gateway_transport::{AccessToken, BoxFuture, TokenError, TokenSource};
use tokio::time::Instant;

use crate::redis_link::RedisLink;
use crate::token_store::{MIN_SHARE, Stop, Stored, TokenStore};

/// How long a replica trusts its copy of the shared token without asking Redis: within
/// this, a Redis that restarted empty has the token shared again by the next call of a
/// replica holding it, before another replica logs in for a second one.
pub const TOKEN_RECHECK: Duration = Duration::from_secs(30);

/// This replica's copy of the shared token, as held in its memory.
#[derive(Clone)]
struct Held {
    token: AccessToken,
    /// When its Redis copy expires (as last read or written): the copy is valid until then.
    until: Instant,
    /// When it is due for renewal, as last read or written.
    fresh_until: Instant,
    /// Until when it is used without asking Redis: the recheck interval after it was last
    /// read, written or kept, and never past `until`.
    trusted_until: Instant,
}

impl Held {
    /// A copy of `stored`, as Redis holds it from now.
    fn new(stored: Stored, recheck: Duration) -> Self {
        let until = gateway_transport::clock::from_now(stored.left);
        let fresh_until = gateway_transport::clock::from_now(stored.fresh).min(until);
        let mut trusted_until = gateway_transport::clock::from_now(recheck).min(until);
        // Read again when it falls due, so the renewal starts then, not a recheck later.
        if fresh_until > Instant::now() {
            trusted_until = trusted_until.min(fresh_until);
        }
        Self {
            token: stored.token,
            until,
            fresh_until,
            trusted_until,
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

    /// The copy as it would be shared again now.
    fn to_stored(&self) -> Stored {
        Stored {
            token: self.token.clone(),
            left: self.left(),
            fresh: self.fresh_until.saturating_duration_since(Instant::now()),
        }
    }
}

/// The fleet's token source.
pub(crate) struct FleetTokens {
    store: Arc<TokenStore>,
    /// The shared token as this replica last read or shared it.
    copy: Mutex<Option<Held>>,
    /// How long the copy is used without asking Redis ([`TOKEN_RECHECK`] by default).
    recheck: Duration,
    /// One call of this replica at a time goes to Redis for the token.
    flight: tokio::sync::Mutex<()>,
}

impl FleetTokens {
    pub(crate) fn new(
        link: Arc<RedisLink>,
        local: Arc<dyn TokenSource>,
        recheck: Duration,
    ) -> Self {
        Self {
            store: Arc::new(TokenStore::new(link, local)),
            copy: Mutex::new(None),
            recheck,
            flight: tokio::sync::Mutex::new(()),
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
    /// this replica at a time, while the others use a copy still valid). A token read or
    /// kept past its freshness is renewed in the background.
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
            // With Redis unreachable, the call asking it may wait out its command
            // timeout: the others go to the local source at once rather than queue
            // behind it to learn the same.
            if self.store.degraded() {
                return Err(Stop::Local);
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
            .filter(|c| c.left() >= MIN_SHARE && !self.store.is_refused(&c.token));
        let copy = match (
            self.store
                .shared(mine.as_ref().map(Held::to_stored).as_ref())
                .await,
            mine,
        ) {
            (Ok(stored), _) => Held::new(stored, self.recheck),
            // Redis is unavailable: the valid copy stands, and Redis is asked again later.
            (Err(Stop::Local), Some(mine)) => mine.renewed(self.recheck),
            (Err(stop), _) => return Err(stop),
        };
        let token = copy.token.clone();
        let due = Instant::now() >= copy.fresh_until;
        let mut held = self.copy.lock().unwrap_or_else(PoisonError::into_inner);
        // A 401 for it may have come while Redis was asked: a refused token is not kept,
        // and this call goes to the local source.
        if self.store.is_refused(&token) {
            *held = None;
            return Err(Stop::Local);
        }
        *held = Some(copy);
        drop(held);
        if due {
            self.store.renew_in_background(&token);
        }
        Ok(token)
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
                Err(Stop::Local) => self.store.local().token().await,
            }
        })
    }

    fn invalidate(&self, token: &AccessToken) {
        self.store.local().invalidate(token);
        // Refused first, then dropped: a recheck storing its copy meanwhile either sees it
        // refused or is undone here.
        self.store.refuse(token);
        let mut copy = self.copy.lock().unwrap_or_else(PoisonError::into_inner);
        if copy.as_ref().is_some_and(|c| c.token.same_as(token)) {
            *copy = None;
        }
    }

    fn valid_for(&self, token: &AccessToken) -> Option<Duration> {
        self.store.local().valid_for(token)
    }
}
