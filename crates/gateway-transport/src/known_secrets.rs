//! Secrets the gateway is never sent, but an answer may still quote (a proxy in front of
//! it that knows the OAuth client's): taken out of errors and correlation ids as the
//! request's own token is.

use std::fmt;
use std::sync::Arc;

/// Secrets to take out of every answer's error text and correlation id, beside the
/// request's own token: the router gives its OAuth client's secret and the Basic
/// credential built from it.
///
/// ```
/// use gateway_transport::KnownSecrets;
/// let known = KnownSecrets::new(["s3cret".to_owned(), String::new()]);
/// assert_eq!(known.len(), 1, "an empty string is no secret");
/// assert_eq!(format!("{known:?}"), "KnownSecrets(1 redacted)");
/// ```
#[derive(Clone, Default)]
pub struct KnownSecrets(Arc<[Box<str>]>);

/// How many secrets, the request's token included, are listed without an allocation.
const INLINE: usize = 4;

impl KnownSecrets {
    /// These secrets (empty strings are left out).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        Self(
            secrets
                .into_iter()
                .filter(|s| !s.is_empty())
                .map(String::into_boxed_str)
                .collect(),
        )
    }

    /// These secrets and `more`.
    #[must_use]
    pub fn extended(&self, more: impl IntoIterator<Item = String>) -> Self {
        Self::new(self.0.iter().map(ToString::to_string).chain(more))
    }

    /// How many secrets are known.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// These secrets and `token`, as `redact_secrets` takes them (no allocation for up to
    /// three known secrets, so every answer's correlation id can go through it).
    pub(crate) fn and<'a>(&'a self, token: Option<&'a str>) -> SecretList<'a> {
        let all = token.into_iter().chain(self.0.iter().map(|s| &**s));
        let mut list = SecretList {
            inline: [""; INLINE],
            len: 0,
            spilled: Vec::new(),
        };
        if self.0.len() < INLINE {
            for (slot, secret) in list.inline.iter_mut().zip(all) {
                *slot = secret;
                list.len += 1;
            }
        } else {
            list.spilled = all.collect();
        }
        list
    }
}

impl fmt::Debug for KnownSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KnownSecrets({} redacted)", self.0.len())
    }
}

/// A request's token and the [`KnownSecrets`], listed for `redact_secrets`.
pub(crate) struct SecretList<'a> {
    inline: [&'a str; INLINE],
    len: usize,
    spilled: Vec<&'a str>,
}

impl<'a> SecretList<'a> {
    /// The secrets, the token first.
    pub(crate) fn as_slice(&self) -> &[&'a str] {
        if self.spilled.is_empty() {
            self.inline.get(..self.len).unwrap_or_default()
        } else {
            &self.spilled
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_first_and_many_secrets_spill() {
        let two = KnownSecrets::new(["a".to_owned(), "b".to_owned()]);
        assert_eq!(two.and(Some("t")).as_slice(), ["t", "a", "b"]);
        assert_eq!(two.and(None).as_slice(), ["a", "b"]);
        let five = KnownSecrets::new((0..5).map(|n| n.to_string()));
        assert_eq!(five.and(Some("t")).as_slice().len(), 6);
        assert!(KnownSecrets::default().and(None).as_slice().is_empty());
        let more = two.extended(["c".to_owned()]);
        assert_eq!(more.and(None).as_slice(), ["a", "b", "c"]);
    }
}
