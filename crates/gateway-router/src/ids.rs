//! Ids for requests, correlation and audit entries: random (v4) and time-ordered (v7)
//! UUIDs with 122 and 74 random bits, drawn from `uuid`'s thread-local `ChaCha`
//! generator (no system call per id). They identify calls; they are not secrets.

use uuid::Uuid;

/// A random (version 4) UUID.
pub(crate) fn random() -> Uuid {
    Uuid::new_v4()
}

/// A time-ordered (version 7) UUID, so audit entries sort by time.
pub(crate) fn time_ordered() -> Uuid {
    Uuid::now_v7()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_uniqueness() {
        let ids: std::collections::HashSet<Uuid> = (0..10_000).map(|_| random()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|u| u.get_version_num() == 4));
        let a = time_ordered();
        let b = time_ordered();
        assert_eq!(a.get_version_num(), 7);
        assert!(b > a, "v7 ids sort by creation time");
    }
}
