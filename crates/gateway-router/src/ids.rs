//! Ids for requests, correlation and audit entries: random (v4) and time-ordered (v7)
//! UUIDs, drawn from a fast thread-local generator instead of a system call per id.
//! They identify calls; they are not secrets.

use uuid::Uuid;

/// A random (version 4) UUID.
pub(crate) fn random() -> Uuid {
    uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid()
}

/// A time-ordered (version 7) UUID, so audit entries sort by time.
pub(crate) fn time_ordered() -> Uuid {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut random = [0u8; 10];
    random.copy_from_slice(&fastrand::u128(..).to_le_bytes()[..10]);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
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
        let (ta, tb) = (
            a.get_timestamp().unwrap().to_unix(),
            b.get_timestamp().unwrap().to_unix(),
        );
        assert!(tb >= ta);
    }
}
