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
        /// The URL as given (any user name and password replaced by `***`).
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A scheme other than `http` or `https`.
    #[error("`{url}` uses scheme `{scheme}`; only https (and http on loopback) is allowed")]
    Scheme {
        /// The URL as given (any user name and password replaced by `***`).
        url: String,
        /// The scheme found.
        scheme: String,
    },
    /// The URL carries a user name or password (`user:pass@host`): a secret that error
    /// messages and logs would repeat, and that no host the router talks to takes.
    #[error("`{url}` carries a user name or password before its host; put no credentials in a URL")]
    Credentials {
        /// The URL as given, with its user name and password replaced by `***`.
        url: String,
    },
    /// Plain `http://` to a host that is not loopback.
    #[error(
        "`{url}` is plain http to a non-loopback host; use https, or allow insecure http explicitly"
    )]
    InsecureHttp {
        /// The URL as given (any user name and password replaced by `***`).
        url: String,
    },
}

/// `url` with anything between its `scheme://` and its last `@` replaced by `***`, so a
/// password in it never reaches a message. A password may hold `@`, `/`, `?` or `#`,
/// so where its authority ends cannot be told: an `@` further on (in a path or a query)
/// is taken as the end of a password too, hiding what comes before it.
///
/// ```
/// use gateway_model::endpoint::redact_userinfo;
///
/// assert_eq!(redact_userinfo("https://u:pw@host/p"), "https://***@host/p");
/// assert_eq!(redact_userinfo("https://u:p@w/x@host/p"), "https://***@host/p");
/// assert_eq!(redact_userinfo("https://host/a@b"), "https://***@b");
/// assert_eq!(redact_userinfo("https://host/a"), "https://host/a");
/// ```
pub fn redact_userinfo(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    match rest.rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &rest[at..]),
        None => url.to_owned(),
    }
}

/// Parses `url` and checks it is https, or http to a loopback host, or http with
/// `allow_insecure_http` set, with no user name or password in it.
pub fn check_url(url: &str, allow_insecure_http: bool) -> Result<Uri, UrlError> {
    let shown = || redact_userinfo(url);
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| UrlError::Malformed {
            url: shown(),
            reason: e.to_string(),
        })?;
    let Some(scheme) = uri.scheme_str() else {
        return Err(UrlError::Malformed {
            url: shown(),
            reason: "no scheme".into(),
        });
    };
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(UrlError::Credentials { url: shown() });
    }
    if url.contains('#') {
        // Never sent; after a base URL it would swallow every path appended to it.
        return Err(UrlError::Malformed {
            url: shown(),
            reason: "a fragment (`#...`) has no place in it".into(),
        });
    }
    if let Some(authority) = uri.authority() {
        let after_host = authority.as_str().rsplit(']').next().unwrap_or("");
        if after_host.contains(':') && uri.port_u16().is_none_or(|port| port == 0) {
            return Err(UrlError::Malformed {
                url: shown(),
                reason: "its port must be a number from 1 to 65535".into(),
            });
        }
    }
    let Some(host) = uri.host() else {
        return Err(UrlError::Malformed {
            url: shown(),
            reason: "no host".into(),
        });
    };
    match scheme {
        "https" => Ok(uri),
        "http" if allow_insecure_http || is_loopback_host(host) => Ok(uri),
        "http" => Err(UrlError::InsecureHttp { url: shown() }),
        other => Err(UrlError::Scheme {
            url: shown(),
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
    fn a_user_name_or_password_is_refused_and_never_repeated() {
        for url in [
            "https://user:s3cret@hooks.example.com/audit",
            "https://s3cret@hooks.example.com",
            "http://user:s3cret@127.0.0.1:8080/hook",
            "https://a@b:s3cret@hooks.example.com/x",
        ] {
            let err = check_url(url, true).unwrap_err();
            assert!(
                matches!(err, UrlError::Credentials { .. }),
                "{url}: {err:?}"
            );
            let text = err.to_string();
            assert!(!text.contains("s3cret"), "{text}");
            assert!(text.contains("***@"), "{text}");
        }
        // A URL refused for another reason does not repeat a password either, nor one
        // holding a character that ends the authority early.
        for url in [
            "ftp://user:s3cret@host/x",
            "https://user:s3cret@ho st/x",
            "https://hook:s3cret/x@audit.example.com/in",
            "https://hook:s3cret?x@audit.example.com/in",
            "https://hook:s3cret#x@audit.example.com/in",
            "https://hook:a@s3cret/x@audit.example.com/in",
        ] {
            let text = check_url(url, false).unwrap_err().to_string();
            assert!(!text.contains("s3cret"), "{url}: {text}");
        }
        // A port out of range, an empty one, or a fragment is refused.
        for url in [
            "http://127.0.0.1:65536",
            "http://127.0.0.1:0/x",
            "http://127.0.0.1:",
            "https://[::1]:99999/x",
            "https://host:18446744073709551615",
            "http://127.0.0.1:8080#frag",
        ] {
            assert!(
                matches!(check_url(url, false), Err(UrlError::Malformed { .. })),
                "{url}"
            );
        }
        assert!(check_url("https://[::1]/x", false).is_ok());
        assert!(check_url("https://[::1]:8443/x", false).is_ok());
        assert!(check_url("http://127.0.0.1:65535", false).is_ok());
        // An `@` after the host (a path, a query) is no credential.
        assert!(check_url("https://hooks.example.com/a@b?c=d@e", false).is_ok());
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
