//! How an exchange failed: a connect, TLS or broken-connection failure, told apart from
//! a call that waited in vain for a connection another call was opening (nothing sent).

use std::error::Error as StdError;

use crate::error::ErrorKind;

/// How an exchange failed: as the error says, or before anything was sent, waiting for
/// a connection another call was opening.
#[derive(Debug)]
pub(super) enum Failure {
    Failed(ErrorKind),
    NotConnected(ErrorKind),
}

impl From<ErrorKind> for Failure {
    fn from(kind: ErrorKind) -> Self {
        Failure::Failed(kind)
    }
}

/// Sorts a client error into connect, TLS or broken-connection failures, and a call that
/// waited for a connection that was never made.
pub(super) fn classify(err: &hyper_util::client::legacy::Error, host: &str) -> Failure {
    // A TLS error while connecting is the handshake's (a certificate refused, say); one
    // on an established connection (an alert, a bad record) ended that connection, as a
    // reset would, and is retried as one.
    if err.is_connect() {
        if let Some(reason) = tls_cause(err) {
            return Failure::Failed(ErrorKind::Tls {
                host: host.to_owned(),
                reason,
            });
        }
        if waited_in_vain(err) {
            return Failure::NotConnected(ErrorKind::Connect {
                host: host.to_owned(),
                reason: "the HTTP/2 connection this call waited for, opened by another call, \
                         was not made"
                    .to_owned(),
            });
        }
        return Failure::Failed(ErrorKind::Connect {
            host: host.to_owned(),
            reason: chain(err),
        });
    }
    Failure::Failed(ErrorKind::Connection {
        host: host.to_owned(),
        reason: chain(err),
    })
}

/// Whether the pool gave up on this call's wait for a connection another call was
/// opening (that call was dropped, or its connect failed): nothing was sent.
fn waited_in_vain(err: &hyper_util::client::legacy::Error) -> bool {
    use hyper_util::client::legacy::pool;
    err.source()
        .and_then(|source| source.downcast_ref::<pool::Error>())
        .is_some_and(|e| matches!(e, pool::Error::CheckoutNoLongerWanted))
}

/// The rustls error somewhere in the source chain, if any. `io::Error`s are looked
/// into as well (their `source()` skips the error they wrap, and hyper-rustls wraps
/// tokio-rustls' `io::Error` in another one).
fn tls_cause(err: &(dyn StdError + 'static)) -> Option<String> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(describe_tls(tls));
    }
    if let Some(inner) = err
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref)
        && let Some(found) = tls_cause(inner)
    {
        return Some(found);
    }
    err.source().and_then(tls_cause)
}

fn describe_tls(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => format!(
            "{err}: the server's certificate is not signed by a trusted CA (for a private gateway, set tls.extra_ca_file)"
        ),
        _ => err.to_string(),
    }
}

/// Every message in the source chain, joined, without repeats.
pub(super) fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}
