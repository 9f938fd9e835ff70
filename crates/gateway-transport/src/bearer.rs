//! The bearer-token hook: where the transport gets the `Authorization` header, and how it
//! reports a token the server refused. `gateway-auth` implements [`TokenSource`] with a
//! cached OAuth client-credentials provider.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

/// A boxed future, as [`TokenSource`] returns (object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The longest access token taken, in bytes (Genesys Cloud's are far shorter; a JWT
/// with many claims stays under this).
pub const MAX_ACCESS_TOKEN_BYTES: usize = 16 * 1024;

/// An access token. Its text never appears in `Debug` or `Display`; the ready-made
/// `Authorization` header value is marked sensitive (hidden from hyper's logs and HPACK).
#[derive(Clone)]
pub struct AccessToken {
    header: HeaderValue,
    id: u64,
}

impl AccessToken {
    /// Wraps a raw token; `None` if it is empty, longer than [`MAX_ACCESS_TOKEN_BYTES`],
    /// or holds anything but visible ASCII (a bearer token's characters, RFC 6750).
    pub fn new(token: &str) -> Option<Self> {
        if token.is_empty()
            || token.len() > MAX_ACCESS_TOKEN_BYTES
            || !token.bytes().all(|b| b.is_ascii_graphic())
        {
            return None;
        }
        let mut header = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        header.set_sensitive(true);
        Some(Self {
            header,
            id: fingerprint(token),
        })
    }

    /// The `Authorization` header value (`Bearer <token>`).
    pub fn header_value(&self) -> &HeaderValue {
        &self.header
    }

    /// The raw token text. Handle with care: this is a secret.
    pub fn expose(&self) -> &str {
        self.header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or("")
    }

    /// Whether two values hold the same token.
    pub fn same_as(&self, other: &AccessToken) -> bool {
        self.id == other.id && self.header == other.header
    }
}

/// A non-secret, non-reversible tag to tell tokens apart cheaply (FNV-1a).
fn fingerprint(token: &str) -> u64 {
    token.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

impl fmt::Display for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted token>")
    }
}

/// Why no token could be had. Messages never contain a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    /// What went wrong, for humans.
    pub message: String,
    /// Whether trying again later may help (a network failure) or not (rejected credentials).
    pub retryable: bool,
    /// When the source will ask the login host again, if it knows (it backs off after a
    /// failure): a caller with that much time left waits and asks again.
    pub retry_in: Option<Duration>,
}

impl TokenError {
    /// A failure that a later attempt may not repeat.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            retry_in: None,
        }
    }

    /// A failure that will repeat until the configuration changes.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            retry_in: None,
        }
    }

    /// The same failure, saying when the source will try again.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gateway_transport::TokenError;
    ///
    /// let err = TokenError::transient("the login host answered HTTP 503")
    ///     .with_retry_in(Duration::from_millis(800));
    /// assert_eq!(err.retry_in, Some(Duration::from_millis(800)));
    /// ```
    #[must_use]
    pub fn with_retry_in(mut self, wait: Duration) -> Self {
        self.retry_in = Some(wait);
        self
    }
}

/// Supplies bearer tokens to the transport. Cheap to call: implementations cache.
pub trait TokenSource: Send + Sync + 'static {
    /// A token that is valid now.
    fn token(&self) -> BoxFuture<'_, Result<AccessToken, TokenError>>;

    /// A token that is valid now if one is at hand without waiting (a cached one), else
    /// `None`. The transport asks this first and awaits [`TokenSource::token`] only when
    /// it says `None`, so a call with a cached token neither boxes a future nor waits.
    fn ready_token(&self) -> Option<AccessToken> {
        None
    }

    /// Reports that the server refused `token` (a 401); the next [`TokenSource::token`]
    /// must not return it. Called for every 401; the transport sends a call again after
    /// one 401 at most, so a bad token cannot loop.
    fn invalidate(&self, token: &AccessToken);

    /// How much longer `token` stays usable, if this source knows (a fleet caches a
    /// shared token for that long).
    fn valid_for(&self, token: &AccessToken) -> Option<Duration> {
        let _ = token;
        None
    }

    /// How long until this source would refresh `token` ahead of its expiry, if it knows
    /// (a fleet renews the shared token then, while it is still valid).
    fn refresh_in(&self, token: &AccessToken) -> Option<Duration> {
        let _ = token;
        None
    }

    /// A token to use instead of `token`, which is due for a refresh but still valid:
    /// one fetched now, unless the source holds one newer and not yet due. By default,
    /// [`TokenSource::token`].
    fn renew(&self, token: &AccessToken) -> BoxFuture<'_, Result<AccessToken, TokenError>> {
        let _ = token;
        self.token()
    }
}

/// A token source that always returns the same token (for tests, or tokens obtained elsewhere).
#[derive(Clone)]
pub struct StaticToken {
    token: AccessToken,
}

impl StaticToken {
    /// A source for `token`; `None` if it is not a bearer token ([`AccessToken::new`]).
    pub fn new(token: &str) -> Option<Self> {
        AccessToken::new(token).map(|token| Self { token })
    }
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticToken")
            .field("token", &self.token)
            .finish()
    }
}

impl TokenSource for StaticToken {
    fn ready_token(&self) -> Option<AccessToken> {
        Some(self.token.clone())
    }

    fn token(&self) -> BoxFuture<'_, Result<AccessToken, TokenError>> {
        let token = self.token.clone();
        Box::pin(async move { Ok(token) })
    }

    /// A static token cannot be refreshed; the next call fails with 401 again.
    fn invalidate(&self, _: &AccessToken) {}
}

impl<T: TokenSource + ?Sized> TokenSource for Arc<T> {
    fn token(&self) -> BoxFuture<'_, Result<AccessToken, TokenError>> {
        (**self).token()
    }

    fn ready_token(&self) -> Option<AccessToken> {
        (**self).ready_token()
    }

    fn invalidate(&self, token: &AccessToken) {
        (**self).invalidate(token);
    }

    fn valid_for(&self, token: &AccessToken) -> Option<Duration> {
        (**self).valid_for(token)
    }

    fn refresh_in(&self, token: &AccessToken) -> Option<Duration> {
        (**self).refresh_in(token)
    }

    fn renew(&self, token: &AccessToken) -> BoxFuture<'_, Result<AccessToken, TokenError>> {
        (**self).renew(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_show_their_text() {
        let t = AccessToken::new("s3cr3t-token").unwrap();
        assert!(!format!("{t:?} {t}").contains("s3cr3t"));
        assert_eq!(t.expose(), "s3cr3t-token");
        assert!(t.header_value().is_sensitive());
        assert!(t.same_as(&AccessToken::new("s3cr3t-token").unwrap()));
        assert!(!t.same_as(&AccessToken::new("other").unwrap()));
        assert!(AccessToken::new("bad\ntoken").is_none());
        for not_a_token in ["", " ", "two words", "tab\there"] {
            assert!(AccessToken::new(not_a_token).is_none(), "{not_a_token:?}");
        }
        let s = StaticToken::new("s3cr3t-token").unwrap();
        assert!(!format!("{s:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_token_is_visible_ascii_of_a_bounded_length() {
        // A header carries these bytes, but `expose` could not give them back as text.
        assert!(AccessToken::new("tökén").is_none());
        assert!(AccessToken::new("nul\u{0}in").is_none());
        let longest = "a".repeat(MAX_ACCESS_TOKEN_BYTES);
        assert_eq!(AccessToken::new(&longest).unwrap().expose(), longest);
        assert!(AccessToken::new(&format!("{longest}a")).is_none());
        let punctuated = "eyJ0eXAi.OiJK-V1Qi_LC/J+h=~";
        assert_eq!(AccessToken::new(punctuated).unwrap().expose(), punctuated);
    }
}
