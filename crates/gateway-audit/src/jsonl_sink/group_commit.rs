//! Group commit: callers queue their lines, and whoever finds no writer at work writes
//! every queued line in one go, until the queue is empty.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::AuditError;
use crate::jsonl_sink::failed_ranges::FailedRanges;

/// Lines queued closer together than this, or a last write that took several lines, mean
/// others are likely to queue theirs in the next moments: worth a writer's yield so they
/// share its write. Otherwise (a lone caller, a slow upstream) the yield would only wake
/// an idle worker thread for nothing: measured at one caller, 1.6 futex calls and about
/// 15 µs of CPU per call.
const BUSY_GAP: Duration = Duration::from_micros(50);

/// A line just queued.
#[derive(Debug, Clone, Copy)]
pub(super) struct Queued {
    /// Its sequence number.
    pub(super) seq: u64,
    /// Whether the line before it came less than [`BUSY_GAP`] earlier, or the last
    /// write took more than one line.
    pub(super) busy: bool,
}

/// Lines waiting to be written by whichever caller leads the next write.
#[derive(Default)]
struct Queue {
    /// The waiting lines, back to back.
    buf: Vec<u8>,
    /// The length of each waiting line, in order.
    lens: Vec<usize>,
    /// The sequence number of the last line queued.
    queued: u64,
    /// Whether a caller is writing queued lines now.
    leader: bool,
    /// Whether the sink was closed (kept here so queueing never waits on a write).
    closed: bool,
    /// When the last line was queued.
    last_queued_at: Option<Instant>,
    /// How many lines the last write took.
    last_batch: usize,
}

/// How far the written lines go, and which lines failed.
#[derive(Clone, Default)]
pub(super) struct Appended {
    /// Every line up to this sequence number has been written (or has failed).
    through: u64,
    /// The lines whose write failed.
    failures: FailedRanges,
}

impl Appended {
    /// Why writing a line in `first..=last` failed, if one did (once `through >= last`).
    pub(super) fn failure_in(&self, first: u64, last: u64) -> Option<&Arc<str>> {
        self.failures.find(first, last)
    }

    /// Every line up to this sequence number has been written (or has failed).
    pub(super) fn through(&self) -> u64 {
        self.through
    }

    /// Whether line `seq` was written: `None` while it waits, else `Err(why)` if it failed.
    pub(super) fn outcome(&self, seq: u64) -> Option<Result<(), Arc<str>>> {
        if self.through < seq {
            return None;
        }
        Some(match self.failures.find(seq, seq) {
            Some(message) => Err(Arc::clone(message)),
            None => Ok(()),
        })
    }
}

/// The most bytes of lines waiting to be written: past it (a write that does not
/// return, on a disk that stopped answering) an entry is refused at once rather than
/// held in memory with every later one.
pub(super) const MAX_QUEUED_BYTES: usize = 64 << 20;

/// Why a line was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// The sink was closed.
    Closed,
    /// [`MAX_QUEUED_BYTES`] are waiting already.
    Full {
        /// The bytes waiting.
        queued_bytes: usize,
    },
}

/// The queue of lines and how far writing them went.
pub(super) struct GroupCommit {
    queue: Mutex<Queue>,
    appended: watch::Sender<Appended>,
}

impl GroupCommit {
    pub(super) fn new() -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            appended: watch::Sender::new(Appended::default()),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `line`; returns its sequence number and whether lines come close together,
    /// or why it was not queued.
    pub(super) fn enqueue(&self, line: &[u8]) -> Result<Queued, Refused> {
        self.enqueue_at(line, Instant::now())
    }

    /// [`enqueue`](Self::enqueue), with the time it happens.
    fn enqueue_at(&self, line: &[u8], now: Instant) -> Result<Queued, Refused> {
        let mut q = self.queue();
        if q.closed {
            return Err(Refused::Closed);
        }
        if q.buf.len().saturating_add(line.len()) > MAX_QUEUED_BYTES {
            return Err(Refused::Full {
                queued_bytes: q.buf.len(),
            });
        }
        q.buf.extend_from_slice(line);
        q.lens.push(line.len());
        q.queued += 1;
        let close = q
            .last_queued_at
            .replace(now)
            .is_some_and(|last| now.saturating_duration_since(last) < BUSY_GAP);
        let busy = close || q.last_batch > 1;
        Ok(Queued {
            seq: q.queued,
            busy,
        })
    }

    /// Becomes the writer if no one is writing and lines are queued.
    pub(super) fn claim(&self) -> bool {
        let mut q = self.queue();
        if q.leader || q.lens.is_empty() {
            return false;
        }
        q.leader = true;
        true
    }

    /// Writes every queued line with `write` (consecutive lines back to back, and their
    /// lengths; a failure says how many lines it wrote whole first), then gives up the
    /// writer role, which the caller holds.
    pub(super) fn write_queued(
        &self,
        mut write: impl FnMut(&[u8], &[usize]) -> Result<(), (usize, AuditError)>,
    ) {
        let (mut buf, mut lens, mut through) = {
            let mut q = self.queue();
            (
                std::mem::take(&mut q.buf),
                std::mem::take(&mut q.lens),
                q.queued,
            )
        };
        loop {
            let first = through - lens.len() as u64 + 1;
            let result = write(&buf, &lens);
            self.appended.send_modify(|a| {
                a.through = through;
                if let Err((whole, e)) = &result {
                    // The lines before the failing write are in a file: only the rest failed.
                    let failed = first.saturating_add(*whole as u64);
                    a.failures.add(failed, through, e.to_string().into());
                }
            });
            let mut q = self.queue();
            q.last_batch = lens.len();
            buf.clear();
            lens.clear();
            if q.lens.is_empty() {
                q.leader = false;
                // Keep the (now empty) buffers' capacity for the next batch.
                q.buf = buf;
                q.lens = lens;
                return;
            }
            std::mem::swap(&mut buf, &mut q.buf);
            std::mem::swap(&mut lens, &mut q.lens);
            through = q.queued;
        }
    }

    /// Whether line `seq` was written, as far as writing went now.
    pub(super) fn outcome(&self, seq: u64) -> Option<Result<(), Arc<str>>> {
        self.appended.borrow().outcome(seq)
    }

    /// Follows how far writing goes.
    pub(super) fn subscribe(&self) -> watch::Receiver<Appended> {
        self.appended.subscribe()
    }

    /// Refuses lines from now on; returns the sequence number of the last line queued.
    pub(super) fn close(&self) -> u64 {
        let mut q = self.queue();
        q.closed = true;
        q.queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: nothing bounded the lines waiting behind a write that does not
    /// return (a disk that stopped answering): every call's line stayed in memory.
    #[test]
    fn past_the_bound_a_line_is_refused_at_once_and_nothing_is_queued() {
        let commit = GroupCommit::new();
        let big = vec![b'x'; MAX_QUEUED_BYTES - 1];
        let first = commit.enqueue(&big).expect("within the bound");
        assert_eq!(
            commit.enqueue(b"ab").err(),
            Some(Refused::Full {
                queued_bytes: MAX_QUEUED_BYTES - 1
            })
        );
        // One byte still fits, and takes the next number: the refused line took none.
        assert_eq!(
            commit.enqueue(b"a").ok().map(|q| q.seq),
            Some(first.seq + 1)
        );
    }

    fn write_all(commit: &GroupCommit) -> usize {
        assert!(commit.claim(), "lines are queued and no one writes");
        let mut written = 0;
        commit.write_queued(|_, lens| {
            written += lens.len();
            Ok(())
        });
        written
    }

    #[test]
    fn lines_are_busy_when_close_together_or_after_a_shared_write() {
        let commit = GroupCommit::new();
        let t0 = Instant::now();
        let at = |us: u64| t0 + Duration::from_micros(us);

        let first = commit.enqueue_at(b"a\n", at(0)).expect("open");
        assert_eq!(
            (first.seq, first.busy),
            (1, false),
            "a first line has no company"
        );
        let close = commit.enqueue_at(b"b\n", at(10)).expect("open");
        assert_eq!((close.seq, close.busy), (2, true), "10 µs after another");
        assert_eq!(write_all(&commit), 2);

        let after_shared = commit.enqueue_at(b"c\n", at(10_000)).expect("open");
        assert!(after_shared.busy, "the last write took two lines");
        assert_eq!(write_all(&commit), 1);

        let lone = commit.enqueue_at(b"d\n", at(20_000)).expect("open");
        assert!(!lone.busy, "10 ms after a write of one line");
        let just_past = commit.enqueue_at(b"e\n", at(20_000 + 50)).expect("open");
        assert!(!just_past.busy, "50 µs apart is not close");
    }

    /// A batch whose write failed after some lines were written whole fails only the
    /// lines from the failing write on: the others are in a file, and a caller told
    /// otherwise could write them again.
    #[test]
    fn a_write_that_fails_midway_fails_only_the_lines_it_did_not_write() {
        let commit = GroupCommit::new();
        let seqs: Vec<u64> = [b"a\n", b"b\n", b"c\n"]
            .iter()
            .map(|line| commit.enqueue(*line).expect("open").seq)
            .collect();
        assert!(commit.claim());
        commit.write_queued(|_, lens| {
            assert_eq!(lens.len(), 3, "one batch");
            Err((1, AuditError::Closed { sink: "test" }))
        });
        assert_eq!(commit.outcome(seqs[0]), Some(Ok(())));
        assert!(matches!(commit.outcome(seqs[1]), Some(Err(_))));
        assert!(matches!(commit.outcome(seqs[2]), Some(Err(_))));
    }

    #[test]
    fn a_closed_queue_refuses_lines() {
        let commit = GroupCommit::new();
        commit.close();
        assert_eq!(commit.enqueue(b"a\n").err(), Some(Refused::Closed));
    }
}
