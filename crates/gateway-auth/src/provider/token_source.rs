//! [`ClientCredentials`] as the transport's [`TokenSource`].

use std::sync::atomic::Ordering;
use std::time::Duration;

use gateway_transport::{AccessToken, BoxFuture, TokenError, TokenSource};
use tokio::time::Instant;

use super::ClientCredentials;

impl TokenSource for ClientCredentials {
    fn token(&self) -> BoxFuture<'_, Result<AccessToken, TokenError>> {
        Box::pin(async move {
            self.current_token()
                .await
                .map_err(|err| self.token_error(err))
        })
    }

    fn renew(&self, token: &AccessToken) -> BoxFuture<'_, Result<AccessToken, TokenError>> {
        let old = token.clone();
        Box::pin(async move {
            self.renewed(&old)
                .await
                .map_err(|err| self.token_error(err))
        })
    }

    fn refresh_in(&self, token: &AccessToken) -> Option<Duration> {
        self.cached().filter(|c| c.token.same_as(token)).map(|c| {
            if c.refused.load(Ordering::Acquire) {
                Duration::ZERO
            } else {
                c.refresh_at.saturating_duration_since(Instant::now())
            }
        })
    }

    fn ready_token(&self) -> Option<AccessToken> {
        self.usable_token()
    }

    fn valid_for(&self, token: &AccessToken) -> Option<Duration> {
        self.cached()
            .filter(|c| c.token.same_as(token) && !c.refused.load(Ordering::Acquire))
            .map(|c| c.usable_until.saturating_duration_since(Instant::now()))
    }

    /// Marks `token` refused, so it is never handed out again; the next fetch it forces
    /// is rate limited (3 at once, then one per 10 s by default).
    fn invalidate(&self, token: &AccessToken) {
        if let Some(cached) = self.cached().filter(|c| c.token.same_as(token)) {
            cached.refused.store(true, Ordering::Release);
        }
    }
}
