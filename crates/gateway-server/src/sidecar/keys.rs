//! Optional bearer API keys for the sidecar's callers.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use http::StatusCode;
use http::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use http::request::Parts;
use subtle::ConstantTimeEq;

use super::App;
use super::reply::{Reply, error};

/// The fewest characters an API key read from the environment may have.
pub const MIN_API_KEY_CHARS: usize = 16;

/// The API keys callers may present as `Authorization: Bearer <key>`. Redacted in `Debug`.
#[derive(Clone, Default)]
pub struct ApiKeys(Arc<Vec<[u8; 32]>>);

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeys({} key(s), redacted)", self.0.len())
    }
}

impl ApiKeys {
    /// Keys from a comma- or newline-separated list (blank entries ignored).
    ///
    /// ```
    /// let keys = gateway_server::ApiKeys::parse("k-one, k-two");
    /// assert_eq!(keys.len(), 2);
    /// assert!(!format!("{keys:?}").contains("k-one"));
    /// ```
    pub fn parse(list: &str) -> Self {
        Self::of(&split(list))
    }

    /// The keys, each kept as its SHA-256 digest: a presented key is compared digest to
    /// digest, in constant time, so the time taken tells neither a key nor its length.
    fn of(keys: &[&str]) -> Self {
        Self(Arc::new(
            keys.iter().map(|k| digest(k.as_bytes())).collect(),
        ))
    }

    /// Keys from the env var `name`, as [`ApiKeys::parse_strict`] reads them; an unset
    /// variable, or one breaking its rules, is an error naming it.
    pub fn from_env(name: &str) -> Result<Self, String> {
        let value = gateway_model::env_var(name)
            .map_err(|reason| format!("the API keys env var `{name}` {reason}"))?;
        Self::parse_strict(&value)
            .map_err(|reason| format!("the API keys env var `{name}` {reason}"))
    }

    /// Keys from a list as [`ApiKeys::parse`] reads it, refusing a list with no key and a
    /// key that is shorter than [`MIN_API_KEY_CHARS`] or holds anything but visible ASCII
    /// (the error gives the key's place in the list, never the key).
    ///
    /// ```
    /// use gateway_server::ApiKeys;
    /// assert_eq!(ApiKeys::parse_strict("0123456789abcdef0123").unwrap().len(), 1);
    /// let err = ApiKeys::parse_strict("0123456789abcdef0123, secret").unwrap_err();
    /// assert!(err.contains("key 2 of 2 is 6 characters long"), "{err}");
    /// assert!(!err.contains("secret"));
    /// ```
    pub fn parse_strict(list: &str) -> Result<Self, String> {
        let keys = split(list);
        if keys.is_empty() {
            return Err("holds no key".to_owned());
        }
        let count = keys.len();
        for (place, key) in (1..).zip(keys.iter().map(|k| k.as_bytes())) {
            if !key.iter().all(u8::is_ascii_graphic) {
                return Err(format!(
                    "holds a key (key {place} of {count}) with a space, a control character \
                     or a non-ASCII character: a key is visible ASCII only"
                ));
            }
            if key.len() < MIN_API_KEY_CHARS {
                return Err(format!(
                    "holds a key too short to resist guessing (key {place} of {count} is {} \
                     characters long; at least {MIN_API_KEY_CHARS}): `openssl rand -hex 32` \
                     makes a good one",
                    key.len()
                ));
            }
        }
        Ok(Self::of(&keys))
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (then every caller is let in).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `presented` is one of the keys, compared in constant time per key.
    fn admits(&self, presented: &[u8]) -> bool {
        let presented = digest(presented);
        let mut found = subtle::Choice::from(0);
        for key in self.0.iter() {
            found |= key.ct_eq(&presented);
        }
        found.into()
    }
}

/// The keys of a comma- or newline-separated list, trimmed, empty ones left out.
fn split(list: &str) -> Vec<&str> {
    list.split([',', '\n'])
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .collect()
}

/// SHA-256 of `key`.
fn digest(key: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(key).into()
}

/// Why a caller was not let in: a status, a sentence and the `WWW-Authenticate`
/// challenge.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Denied {
    /// 401, or 400 for a malformed request (RFC 6750, 3.1).
    pub(crate) status: StatusCode,
    /// What to tell the caller.
    pub(crate) message: &'static str,
    /// The challenge to answer with.
    pub(crate) challenge: &'static str,
}

/// Whether `headers` carry a valid key (always, when no keys are configured).
pub(crate) fn admit(keys: &ApiKeys, headers: &http::HeaderMap) -> Result<(), Denied> {
    if keys.is_empty() {
        return Ok(());
    }
    // Two are refused, whichever is right: which one a proxy or a framework reads differs,
    // so a key smuggled beside another would be judged by one and used by another.
    let mut given = headers.get_all(AUTHORIZATION).iter();
    if given.next().is_some() && given.next().is_some() {
        return Err(Denied {
            status: StatusCode::BAD_REQUEST,
            message: "send one Authorization header, not several",
            challenge: r#"Bearer error="invalid_request""#,
        });
    }
    // The scheme's name is case-insensitive (RFC 9110, 11.1); one space follows it.
    let presented = headers
        .get(AUTHORIZATION)
        .map(HeaderValue::as_bytes)
        .and_then(|v| v.split_at_checked(7))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"Bearer "))
        .map(|(_, key)| key);
    match presented {
        Some(key) if keys.admits(key) => Ok(()),
        Some(_) => Err(Denied {
            status: StatusCode::UNAUTHORIZED,
            message: "the API key is not valid",
            challenge: r#"Bearer error="invalid_token""#,
        }),
        None => Err(Denied {
            status: StatusCode::UNAUTHORIZED,
            message: "an API key is required: Authorization: Bearer <key>",
            challenge: "Bearer",
        }),
    }
}

/// What a request from a web page is told when no keys are configured.
pub(crate) const FROM_A_WEB_PAGE: &str = "a request from a web page (it carries `Origin`) is refused: without API keys ([server] api_keys_env) any page a browser on this host opens could make routed calls";

/// Whether a request comes from a web page (browsers send `Origin` with every POST and
/// every cross-origin request; SDKs, curl and proxies to an API do not) while no keys
/// are configured. Such a request is refused: a page's "simple" cross-origin POST (a
/// `text/plain` body) needs no CORS preflight, so it would otherwise reach the gateway,
/// billed, though the page cannot read the answer. With keys, it cannot present one.
pub(crate) fn from_a_web_page_without_keys(keys: &ApiKeys, headers: &http::HeaderMap) -> bool {
    keys.is_empty() && headers.contains_key(http::header::ORIGIN)
}

/// How a door answers a request the API keys turn away.
pub(crate) trait Refusal {
    /// A web page's request, with no keys configured (403).
    fn cross_origin() -> Reply;
    /// A request without a valid key (401, or 400 for several, with its challenge).
    fn unauthenticated(denied: Denied) -> Reply;
}

/// Why the API keys turn a request away.
enum TurnedAway {
    /// A web page's request, with no keys configured.
    CrossOrigin,
    /// No valid key.
    Unauthenticated(Denied),
}

impl TurnedAway {
    /// `D`'s answer to it.
    fn reply<D: Refusal>(self) -> Reply {
        match self {
            Self::CrossOrigin => D::cross_origin(),
            Self::Unauthenticated(denied) => D::unauthenticated(denied),
        }
    }
}

/// Whether the API keys let a request with `headers` through.
fn check(app: &App, headers: &http::HeaderMap) -> Result<(), TurnedAway> {
    let keys = &app.options.api_keys;
    if from_a_web_page_without_keys(keys, headers) {
        return Err(TurnedAway::CrossOrigin);
    }
    admit(keys, headers).map_err(TurnedAway::Unauthenticated)
}

/// A request the API keys let through: a handler that takes this extractor runs only
/// then, and `D` answers the others. An extractor rather than a middleware, which
/// axum would box on every request for the call's whole life.
pub(crate) struct Keyed<D>(PhantomData<D>);

impl<D: Refusal> FromRequestParts<App> for Keyed<D> {
    type Rejection = Reply;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Reply> {
        check(app, &parts.headers)
            .map(|()| Keyed(PhantomData))
            .map_err(TurnedAway::reply::<D>)
    }
}

/// [`Keyed`], body and all, for the paths that read one: a refused request's body is
/// dropped as it arrives first ([`App::discard_body`]), so the caller reads its 401 or
/// 403 rather than a reset from a socket closed on unread data.
pub(crate) struct KeyedRequest<D>(pub(crate) Request<Body>, pub(crate) PhantomData<D>);

impl<D: Refusal> FromRequest<App> for KeyedRequest<D> {
    type Rejection = Reply;

    async fn from_request(request: Request<Body>, app: &App) -> Result<Self, Reply> {
        match check(app, request.headers()) {
            Ok(()) => Ok(Self(request, PhantomData)),
            Err(turned) => {
                app.discard_body(request).await;
                Err(turned.reply::<D>())
            }
        }
    }
}

/// The sidecar's own door: its refusals have the Genesys-style error body.
pub(crate) enum SidecarDoor {}

/// A request to the sidecar's own paths that the API keys let through.
pub(crate) type SidecarKey = Keyed<SidecarDoor>;

/// [`SidecarKey`], body and all.
pub(crate) type SidecarRequest = KeyedRequest<SidecarDoor>;

impl Refusal for SidecarDoor {
    fn cross_origin() -> Reply {
        error(
            StatusCode::FORBIDDEN,
            "router.cross.origin",
            FROM_A_WEB_PAGE,
            None,
        )
    }

    fn unauthenticated(denied: Denied) -> Reply {
        let code = if denied.status == StatusCode::BAD_REQUEST {
            "router.invalid.request"
        } else {
            "router.unauthenticated"
        };
        let mut reply = error(denied.status, code, denied.message, None);
        reply
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static(denied.challenge));
        reply
    }
}
