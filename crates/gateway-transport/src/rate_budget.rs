//! The rate an OAuth client may send at: a pace every call shares (and, through an
//! implementation such as `gateway-fleet`'s, every replica of a fleet).

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::bearer::BoxFuture;

/// A shared pace of requests. A call asks for a slot before each attempt and waits the
/// time it is given; a 429 or a spent `inin-ratelimit-*` window pauses everyone.
pub trait RateBudget: Send + Sync + 'static {
    /// Reserves the next slot: `Ok(wait)` to wait before sending, or `Err(wait)` (and no
    /// slot taken) when the slot is further away than `max_wait`.
    fn reserve(&self, max_wait: Duration) -> BoxFuture<'_, Result<Duration, Duration>>;

    /// Holds every request back for `wait` (the gateway asked for a pause).
    fn pause(&self, wait: Duration);

    /// Gives back a slot [`reserve`](Self::reserve) granted, due at `due`, for a request
    /// that will not be sent (its call was cancelled while it waited), so the pace is not
    /// spent on nothing. The transport gives back only a slot whose time has not come:
    /// past it, the pace has moved on, and a slot given back would let one request more
    /// through than the rate allows. The default keeps the slot: a budget kept elsewhere
    /// may have no way to give one back.
    fn release(&self, due: Instant) {
        let _ = due;
    }
}

/// A pace of `per_minute` requests with a burst of `burst`, as a generic cell rate
/// algorithm (GCRA): in any window of `w`, at most `w × rate + burst + 1` requests go.
///
/// ```
/// use std::time::Duration;
/// use gateway_transport::{LocalRateBudget, RateBudget};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
/// let budget = LocalRateBudget::new(60, 1); // one a second, two at once
/// assert_eq!(budget.reserve(Duration::ZERO).await, Ok(Duration::ZERO));
/// assert_eq!(budget.reserve(Duration::ZERO).await, Ok(Duration::ZERO));
/// // The third waits its turn, or is refused if it cannot wait that long.
/// assert_eq!(budget.reserve(Duration::ZERO).await, Err(Duration::from_secs(1)));
/// assert_eq!(budget.reserve(Duration::from_secs(5)).await, Ok(Duration::from_secs(1)));
/// # });
/// ```
#[derive(Debug)]
pub struct LocalRateBudget {
    cell: Gcra,
    state: Mutex<Pace>,
}

/// Where the pace stands: the theoretical arrival time of the next request, and the
/// end of the last pause the gateway asked for (a slot given back never goes before it).
#[derive(Debug, Default)]
struct Pace {
    tat: Option<Instant>,
    paused_until: Option<Instant>,
}

/// The arithmetic of GCRA, shared by the local budget and documentation of remote ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Time between two requests at the steady pace.
    pub interval: Duration,
    /// How far ahead of the pace a request may go (`burst × interval`).
    pub tolerance: Duration,
}

impl Gcra {
    /// The cell of `per_minute` requests with a burst of `burst` (`per_minute` of 0 is
    /// read as 1).
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let per_minute = per_minute.max(1);
        let interval = Duration::from_secs(60) / per_minute;
        Self {
            interval,
            tolerance: interval.saturating_mul(burst),
        }
    }
}

impl LocalRateBudget {
    /// A pace of `per_minute` requests, `burst` more at once.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self {
            cell: Gcra::new(per_minute, burst),
            state: Mutex::new(Pace::default()),
        }
    }

    /// The pace.
    pub fn cell(&self) -> Gcra {
        self.cell
    }

    /// Reserves a slot now, without waiting: the wait it needs, or `Err` beyond `max_wait`.
    pub fn try_reserve(&self, max_wait: Duration) -> Result<Duration, Duration> {
        let now = Instant::now();
        let mut pace = self.lock();
        let theoretical = pace.tat.map_or(now, |t| t.max(now));
        let send_at = theoretical
            .checked_sub(self.cell.tolerance)
            .map_or(now, |at| at.max(now));
        let wait = send_at.saturating_duration_since(now);
        if wait > max_wait {
            return Err(wait);
        }
        pace.tat = Some(crate::clock::later(theoretical, self.cell.interval));
        Ok(wait)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pace> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RateBudget for LocalRateBudget {
    fn reserve(&self, max_wait: Duration) -> BoxFuture<'_, Result<Duration, Duration>> {
        let reserved = self.try_reserve(max_wait);
        Box::pin(async move { reserved })
    }

    fn pause(&self, wait: Duration) {
        let now = Instant::now();
        // Nothing goes before `now + wait`: the theoretical time moves past it by the
        // tolerance, which a burst would otherwise spend at once.
        let until = crate::clock::later(crate::clock::later(now, wait), self.cell.tolerance);
        let mut pace = self.lock();
        if pace.tat.is_none_or(|t| t < until) {
            pace.tat = Some(until);
        }
        if pace.paused_until.is_none_or(|t| t < until) {
            pace.paused_until = Some(until);
        }
    }

    fn release(&self, due: Instant) {
        let mut pace = self.lock();
        let Some(tat) = pace.tat else {
            return;
        };
        // Only the last slot reserved is given back: a slot reserved after it keeps its
        // time, and moving the pace back under it would give a third caller that time
        // too, two requests at once where the rate allows one.
        let after_last = crate::clock::later(
            crate::clock::later(due, self.cell.tolerance),
            self.cell.interval,
        );
        if tat > after_last {
            return;
        }
        // One interval less to pace, but never back past a pause the gateway asked for.
        let given_back = tat.checked_sub(self.cell.interval).unwrap_or(tat);
        pace.tat = Some(pace.paused_until.map_or(given_back, |p| given_back.max(p)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a slot given back while a later one was reserved moved the pace back
    /// under that later slot, so a third caller was given its time: two requests at once
    /// where the rate allows one. Only the last slot reserved is given back.
    #[tokio::test(start_paused = true)]
    async fn a_slot_given_back_under_a_later_one_is_kept() {
        let budget = LocalRateBudget::new(60, 0); // one a second
        let s = Duration::from_secs(1);
        assert_eq!(budget.try_reserve(s * 10), Ok(Duration::ZERO));
        assert_eq!(budget.try_reserve(s * 10), Ok(s), "a");
        assert_eq!(budget.try_reserve(s * 10), Ok(s * 2), "b");
        budget.release(Instant::now() + s); // a's call is dropped
        assert_eq!(
            budget.try_reserve(s * 10),
            Ok(s * 3),
            "after b, not with it"
        );
        budget.release(Instant::now() + s * 3); // the last one reserved
        assert_eq!(
            budget.try_reserve(s * 10),
            Ok(s * 3),
            "the last one is given back"
        );
    }

    /// A slot given back is the next caller's, but a pause the gateway asked for holds.
    #[tokio::test(start_paused = true)]
    async fn a_slot_given_back_goes_to_the_next_caller_but_not_past_a_pause() {
        let budget = LocalRateBudget::new(60, 0); // one a second
        assert_eq!(budget.try_reserve(Duration::ZERO), Ok(Duration::ZERO));
        assert_eq!(
            budget.try_reserve(Duration::from_secs(5)),
            Ok(Duration::from_secs(1))
        );
        // That second one was never sent: the third waits as the second would have.
        budget.release(Instant::now() + Duration::from_secs(1));
        assert_eq!(
            budget.try_reserve(Duration::from_secs(5)),
            Ok(Duration::from_secs(1))
        );
        // A pause of 10 s: slots given back do not shorten it.
        budget.pause(Duration::from_secs(10));
        for _ in 0..20 {
            budget.release(Instant::now() + Duration::from_secs(10));
        }
        assert_eq!(
            budget.try_reserve(Duration::from_secs(60)),
            Ok(Duration::from_secs(10))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_rate_times_window_plus_burst_go_in_any_window() {
        let budget = LocalRateBudget::new(600, 3); // every 100 ms, 4 at once
        let mut sent = Vec::new();
        let start = Instant::now();
        for _ in 0..50 {
            let wait = budget.reserve(Duration::from_secs(60)).await.unwrap();
            tokio::time::sleep(wait).await;
            sent.push(Instant::now().duration_since(start));
        }
        let window = Duration::from_secs(1);
        for (i, first) in sent.iter().enumerate() {
            let within = sent[i..]
                .iter()
                .filter(|t| t.saturating_sub(*first) < window)
                .count();
            assert!(
                within <= 10 + 3 + 1,
                "{within} in one second from {first:?}"
            );
        }
        assert_eq!(sent[3], Duration::ZERO, "the burst goes at once");
        assert_eq!(sent[4], Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_everyone_back_and_a_refusal_takes_no_slot() {
        let budget = LocalRateBudget::new(60, 5);
        budget.pause(Duration::from_secs(3));
        assert_eq!(
            budget.try_reserve(Duration::from_secs(1)),
            Err(Duration::from_secs(3))
        );
        assert_eq!(
            budget.try_reserve(Duration::from_secs(10)),
            Ok(Duration::from_secs(3))
        );
        // A hostile wait saturates instead of overflowing.
        budget.pause(Duration::MAX);
        assert!(budget.try_reserve(Duration::from_secs(10)).is_err());
    }
}
