//! Which sequence numbers failed (to be written or synced), by range, with why.

use std::collections::VecDeque;
use std::sync::Arc;

/// Ranges kept before the two oldest are merged into one.
const MAX_RANGES: usize = 64;

/// The ranges of sequence numbers whose write or sync failed, and why, so that every
/// waiter learns the outcome of its own range however late it looks.
///
/// Bounded without forgetting a failure: past [`MAX_RANGES`] ranges, the two oldest
/// merge into one spanning both, so the entries between them count as failed too.
/// Reporting a success as a failure is the safe side; the other way is the bug this
/// type exists to prevent. (By then those old entries' waiters have long looked.)
#[derive(Clone, Debug, Default)]
pub(super) struct FailedRanges {
    /// Oldest first.
    ranges: VecDeque<Failure>,
}

#[derive(Clone, Debug)]
struct Failure {
    first: u64,
    last: u64,
    message: Arc<str>,
}

impl FailedRanges {
    /// Records that `first..=last` failed (nothing if the range is empty).
    pub(super) fn add(&mut self, first: u64, last: u64, message: Arc<str>) {
        if first > last {
            return;
        }
        if self.ranges.len() >= MAX_RANGES
            && let (Some(older), Some(old)) = (self.ranges.pop_front(), self.ranges.pop_front())
        {
            self.ranges.push_front(Failure {
                first: older.first.min(old.first),
                last: older.last.max(old.last),
                message: older.message,
            });
        }
        self.ranges.push_back(Failure {
            first,
            last,
            message,
        });
    }

    /// Why the oldest failure that overlaps `first..=last` failed, if any did.
    pub(super) fn find(&self, first: u64, last: u64) -> Option<&Arc<str>> {
        self.ranges
            .iter()
            .find(|f| f.first <= last && first <= f.last)
            .map(|f| &f.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_range_keeps_its_own_failure() {
        let mut failed = FailedRanges::default();
        failed.add(1, 5, "first".into());
        failed.add(9, 9, "second".into());
        failed.add(4, 2, "empty".into());
        assert_eq!(failed.find(3, 3).map(|m| &**m), Some("first"));
        assert_eq!(failed.find(9, 9).map(|m| &**m), Some("second"));
        assert_eq!(failed.find(6, 8), None);
        assert_eq!(failed.find(2, 3).map(|m| &**m), Some("first"));
        assert_eq!(failed.find(6, 20).map(|m| &**m), Some("second"));
        assert_eq!(failed.find(10, u64::MAX), None);
    }

    #[test]
    fn past_the_bound_old_ranges_merge_and_no_failure_is_forgotten() {
        let mut failed = FailedRanges::default();
        let n = MAX_RANGES as u64 * 3;
        // Every other sequence number fails.
        for seq in (0..n).map(|i| 2 * i + 1) {
            failed.add(seq, seq, format!("failure {seq}").into());
        }
        assert!(failed.ranges.len() <= MAX_RANGES);
        for seq in (0..n).map(|i| 2 * i + 1) {
            assert!(failed.find(seq, seq).is_some(), "{seq} forgotten");
        }
        // The newest ranges are still exact.
        let newest = 2 * n - 1;
        assert_eq!(
            failed.find(newest, newest).map(|m| &**m),
            Some(format!("failure {newest}").as_str())
        );
        assert_eq!(failed.find(newest - 1, newest - 1), None);
    }
}
