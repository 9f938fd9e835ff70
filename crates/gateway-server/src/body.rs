//! Reading a request body within a size cap and a time bound.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is larger than the cap.
    #[error("the request body exceeds {limit} bytes")]
    TooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
    /// The body did not arrive within the body-read timeout.
    #[error("the request body did not arrive within {timeout:?}")]
    TimedOut {
        /// The timeout.
        timeout: Duration,
    },
    /// The connection failed while the body arrived.
    #[error("the request body could not be read: {0}")]
    Broken(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The body is compressed (or otherwise encoded), which the service does not read.
    #[error("the request body is sent with `Content-Encoding: {encoding}`; send it unencoded")]
    Encoded {
        /// The `Content-Encoding` sent (at most 64 printable characters of it).
        encoding: String,
    },
}

impl BodyError {
    /// The HTTP status that answers this failure: 413, 408 or 400.
    pub fn status(&self) -> http::StatusCode {
        match self {
            BodyError::TooLarge { .. } => http::StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TimedOut { .. } => http::StatusCode::REQUEST_TIMEOUT,
            BodyError::Broken(_) => http::StatusCode::BAD_REQUEST,
            BodyError::Encoded { .. } => http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }
}

/// Longest `Content-Encoding` a [`BodyError::Encoded`] repeats.
const MAX_ENCODING_CHARS: usize = 64;

/// Refuses a body sent with a `Content-Encoding` other than `identity`: read as it is,
/// a compressed body would only fail as malformed JSON (415, not 400).
///
/// ```
/// use gateway_server::{BodyError, check_content_encoding};
/// use http::HeaderMap;
///
/// let mut headers = HeaderMap::new();
/// assert!(check_content_encoding(&headers).is_ok());
/// headers.insert("content-encoding", "gzip".parse().unwrap());
/// let err = check_content_encoding(&headers).unwrap_err();
/// assert!(matches!(&err, BodyError::Encoded { encoding } if encoding == "gzip"));
/// assert_eq!(err.status(), http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
/// ```
pub fn check_content_encoding(headers: &http::HeaderMap) -> Result<(), BodyError> {
    let Some(encoded) = headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .find(|value| {
            !value
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"identity")
        })
    else {
        return Ok(());
    };
    let encoding = encoded
        .as_bytes()
        .iter()
        .take(MAX_ENCODING_CHARS)
        .map(|&b| {
            if (b' '..=b'~').contains(&b) {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect();
    Err(BodyError::Encoded { encoding })
}

/// Reads and drops `body`, if it announces at most `limit` bytes, for at most `timeout`:
/// a request refused before its body is read is answered after its body has arrived, so
/// the client reads the answer rather than a reset from a socket closed with unread data.
/// Nothing is kept.
pub(crate) async fn discard_body<B>(body: B, limit: usize, timeout: Duration)
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    if usize::try_from(body.size_hint().lower()).map_or(true, |announced| announced > limit) {
        return;
    }
    let discard = async {
        let mut body = body;
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen = seen.saturating_add(frame.data_ref().map_or(0, Bytes::len));
            if seen > limit {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, discard).await;
}

/// Reads `body` whole, refusing more than `limit` bytes or more than `timeout` of waiting.
///
/// A body that announces more than `limit` bytes (its `Content-Length`) is refused
/// before a byte of it is read, so a client that sent `Expect: 100-continue` gets the
/// 413 instead of an invitation to upload.
pub async fn read_body<B>(body: B, limit: usize, timeout: Duration) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if usize::try_from(body.size_hint().lower()).map_or(true, |announced| announced > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(BodyError::TimedOut { timeout }),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(BodyError::TooLarge { limit })
        }
        Ok(Err(e)) => Err(BodyError::Broken(e)),
    }
}
