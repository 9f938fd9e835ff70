//! Group commit: callers queue their lines, and whoever finds no writer at work writes
//! every queued line in one go, until the queue is empty.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use crate::AuditError;
use crate::jsonl_sink::failed_ranges::FailedRanges;

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

    /// Queues `line`; returns its sequence number, or `None` once closed.
    pub(super) fn enqueue(&self, line: &[u8]) -> Option<u64> {
        let mut q = self.queue();
        if q.closed {
            return None;
        }
        q.buf.extend_from_slice(line);
        q.lens.push(line.len());
        q.queued += 1;
        Some(q.queued)
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
    /// lengths), then gives up the writer role, which the caller holds.
    pub(super) fn write_queued(
        &self,
        mut write: impl FnMut(&[u8], &[usize]) -> Result<(), AuditError>,
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
                if let Err(e) = &result {
                    a.failures.add(first, through, e.to_string().into());
                }
            });
            let mut q = self.queue();
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

    /// Refuses lines from now on.
    pub(super) fn close(&self) {
        self.queue().closed = true;
    }
}
