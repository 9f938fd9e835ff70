//! Rules for the URLs the router talks to: https everywhere, plain http only on loopback.

use std::net::IpAddr;

use http::Uri;

/// Whether `host` (a name or an IP literal, IPv6 with or without brackets) is loopback:
/// `localhost`, `127.0.0.0/8` or `::1`.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The text is not an absolute URL.
    #[error("`{url}` is not an absolute http(s) URL: {reason}")]
    Malformed {
        /// The URL as given.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A scheme other than `http` or `https`.
    #[error("`{url}` uses scheme `{scheme}`; only https (and http on loopback) is allowed")]
    Scheme {
        /// The URL as given.
        url: String,
        /// The scheme found.
        scheme: String,
    },
    /// Plain `http://` to a host that is not loopback.
    #[error(
        "`{url}` is plain http to a non-loopback host; use https, or allow insecure http explicitly"
    )]
    InsecureHttp {
        /// The URL as given.
        url: String,
    },
}

/// Parses `url` and checks it is https, or http to a loopback host, or http with
/// `allow_insecure_http` set.
pub fn check_url(url: &str, allow_insecure_http: bool) -> Result<Uri, UrlError> {
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| UrlError::Malformed {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    let Some(scheme) = uri.scheme_str() else {
        return Err(UrlError::Malformed {
            url: url.to_owned(),
            reason: "no scheme".into(),
        });
    };
    let Some(host) = uri.host() else {
        return Err(UrlError::Malformed {
            url: url.to_owned(),
            reason: "no host".into(),
        });
    };
    match scheme {
        "https" => Ok(uri),
        "http" if allow_insecure_http || is_loopback_host(host) => Ok(uri),
        "http" => Err(UrlError::InsecureHttp {
            url: url.to_owned(),
        }),
        other => Err(UrlError::Scheme {
            url: url.to_owned(),
            scheme: other.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.3.2.1",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "example.com",
            "10.0.0.1",
            "localhost.evil.com",
            "::2",
            "0.0.0.0",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn http_only_on_loopback_unless_allowed() {
        assert!(check_url("https://api.mypurecloud.com", false).is_ok());
        assert!(check_url("http://127.0.0.1:8080", false).is_ok());
        assert!(check_url("http://[::1]:8080/hook", false).is_ok());
        assert!(matches!(
            check_url("http://gateway.internal", false),
            Err(UrlError::InsecureHttp { .. })
        ));
        assert!(check_url("http://gateway.internal", true).is_ok());
        assert!(matches!(
            check_url("ftp://x", false),
            Err(UrlError::Scheme { .. })
        ));
        assert!(matches!(
            check_url("not a url", false),
            Err(UrlError::Malformed { .. })
        ));
        assert!(matches!(
            check_url("/relative", false),
            Err(UrlError::Malformed { .. })
        ));
    }
}
