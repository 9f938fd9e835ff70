//! A circuit breaker per model, so a dead model is skipped at once instead of being
//! retried by every call.
//!
//! Closed → (consecutive failures reach the threshold) → Open → (cooldown passes) →
//! Half-open: one probe call goes through; its success closes the circuit, its failure
//! opens it again. Any success closes a circuit opened by failures: the model is
//! answering again.
//!
//! A long `Retry-After` opens the circuit for that long ("cooling down"), bounded by the
//! router's `max_retry_after_s`, so other calls go straight to a fallback instead of each
//! waiting; after it, one probe goes through as after any opening. Only that probe ends a
//! cool-down: a call let in before it that ends well does not countermand the wait.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use gateway_transport::clock::from_now;
use tokio::time::Instant;

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; this many have failed in a row.
    Closed {
        /// Consecutive failures so far.
        failures: u32,
    },
    /// Calls are refused until then.
    Open {
        /// When a probe may go through.
        until: Instant,
    },
    /// One probe may go through; others are refused while it is out.
    HalfOpen {
        /// Whether the probe is out.
        probing: bool,
    },
}

/// Whether a call may go to the model.
#[derive(Debug)]
#[must_use]
pub enum Admission<'a> {
    /// Go ahead (the circuit is closed).
    Allowed,
    /// Go ahead as the one probe; report its result through the guard.
    Probe(ProbeGuard<'a>),
    /// Skip the model: its circuit is open (or a probe is already out).
    Rejected {
        /// Time until a probe may go through, if known.
        retry_in: Option<Duration>,
    },
}

/// The probe's slot; dropping it unreported (a cancelled call) lets another probe go.
#[derive(Debug)]
pub struct ProbeGuard<'a> {
    breaker: &'a CircuitBreaker,
    /// Which probe this is: only the probe still out may free the half-open slot.
    id: u64,
    reported: bool,
}

impl ProbeGuard<'_> {
    /// The probe succeeded: close the circuit (a cool-down only if this probe is its
    /// current one).
    pub fn success(self) {
        self.report(Health::Healthy);
    }

    /// The probe failed: open the circuit again.
    pub fn failure(self) {
        self.report(Health::Unhealthy);
    }

    /// The probe was told to wait (a long `Retry-After`): open the circuit for `wait`,
    /// in one step so no other call can probe in between.
    pub fn cool_down(self, wait: Duration) {
        self.report(Health::CoolDown(wait));
    }

    /// The probe ended without telling anything about the model's health (a client
    /// error, say): let the next call probe.
    pub fn neutral(self) {
        self.report(Health::Neutral);
    }

    fn report(self, health: Health) {
        let breaker = self.breaker;
        let _ = breaker.report(health, Some(self));
    }
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.release_probe(self.id);
        }
    }
}

/// When a `Retry-After` cools a model's circuit down, and for how long.
///
/// A 429 whose `Retry-After` is at least `after` (`cool_down_on_retry_after_s`) opens the
/// model's circuit for the `Retry-After`, but never longer than `longest`
/// (`max_retry_after_s`); then one probe goes through, as after any opening. With a
/// fallback after the model, the router does not wait out such a 429 (the call moves to
/// the fallback at once); without one, the transport waits out a `Retry-After` up to
/// `max_retry_after_s` within the deadline and fails at once beyond it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoolDownRule {
    /// The shortest `Retry-After` that opens the circuit.
    pub after: Duration,
    /// The longest the circuit stays open for one `Retry-After`.
    pub longest: Duration,
}

impl CoolDownRule {
    /// The rule a configuration states.
    pub fn from_config(config: &gateway_model::RouterConfig) -> Self {
        Self {
            after: Duration::from_secs(config.circuit_breaker.cool_down_on_retry_after_s),
            longest: Duration::from_secs(config.retry.max_retry_after_s),
        }
    }

    /// How long a `Retry-After` of `wait` keeps the circuit open, if it opens it at all.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gateway_router::CoolDownRule;
    ///
    /// let rule = CoolDownRule { after: Duration::from_secs(5), longest: Duration::from_secs(180) };
    /// assert_eq!(rule.cool_down(Duration::from_secs(2)), None);
    /// assert_eq!(rule.cool_down(Duration::from_secs(30)), Some(Duration::from_secs(30)));
    /// assert_eq!(rule.cool_down(Duration::from_secs(100_000)), Some(Duration::from_secs(180)));
    /// ```
    pub fn cool_down(&self, wait: Duration) -> Option<Duration> {
        (wait >= self.after).then(|| wait.min(self.longest))
    }

    /// The longest `Retry-After` waited out when a fallback is at hand: just under
    /// [`after`](Self::after), since any wait that cools the model down fails over.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gateway_router::CoolDownRule;
    ///
    /// let rule = CoolDownRule { after: Duration::from_secs(5), longest: Duration::from_secs(180) };
    /// let longest = rule.longest_wait_with_a_fallback();
    /// assert!(longest < rule.after && rule.cool_down(longest).is_none());
    /// ```
    pub fn longest_wait_with_a_fallback(&self) -> Duration {
        self.after.saturating_sub(Duration::from_nanos(1))
    }
}

/// One model's circuit breaker.
///
/// ```
/// use std::time::Duration;
/// use gateway_router::{Admission, CircuitBreaker};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let breaker = CircuitBreaker::new(2, Duration::from_secs(30));
/// breaker.record_failure();
/// breaker.record_failure();
/// assert!(matches!(breaker.admit(), Admission::Rejected { .. }));
/// # });
/// ```
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<Guarded>,
}

/// A breaker's state, the number of the last probe let through, and whether the circuit
/// is open (or half-open) because the model asked to be left alone (a cool-down).
#[derive(Debug)]
struct Guarded {
    state: BreakerState,
    probe: u64,
    cooling: bool,
}

impl Guarded {
    /// Frees the half-open slot if probe `id` is the one out.
    fn free_probe(&mut self, id: u64) {
        if let BreakerState::HalfOpen { .. } = self.state
            && self.probe == id
        {
            self.state = BreakerState::HalfOpen { probing: false };
        }
    }
}

impl CircuitBreaker {
    /// Opens after `threshold` consecutive failures, for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(Guarded {
                state: BreakerState::Closed { failures: 0 },
                probe: 0,
                cooling: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Guarded> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state now.
    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// Whether the circuit is open and stays open until at least `when`.
    pub(crate) fn open_past(&self, when: Instant) -> bool {
        matches!(self.lock().state, BreakerState::Open { until } if until >= when)
    }

    /// Whether a call may go to the model now.
    pub fn admit(&self) -> Admission<'_> {
        let mut guarded = self.lock();
        match guarded.state {
            BreakerState::Closed { .. } => Admission::Allowed,
            BreakerState::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    self.probe(&mut guarded)
                } else {
                    Admission::Rejected {
                        retry_in: Some(until - now),
                    }
                }
            }
            BreakerState::HalfOpen { probing: false } => self.probe(&mut guarded),
            BreakerState::HalfOpen { probing: true } => Admission::Rejected { retry_in: None },
        }
    }

    /// Lets one probe through (the caller holds the lock).
    fn probe(&self, guarded: &mut Guarded) -> Admission<'_> {
        guarded.state = BreakerState::HalfOpen { probing: true };
        guarded.probe = guarded.probe.wrapping_add(1);
        Admission::Probe(ProbeGuard {
            breaker: self,
            id: guarded.probe,
            reported: false,
        })
    }

    /// A call let in as [`Admission::Allowed`] succeeded: close the circuit, or in a
    /// closed one start the failures in a row again from zero. A cool-down is the
    /// exception: the call was let in before the model asked to be left alone, so only a
    /// probe's success ([`ProbeGuard::success`]) ends it.
    pub fn record_success(&self) {
        let _ = self.report(Health::Healthy, None);
    }

    /// A call failed in a way that says the model is unhealthy.
    pub fn record_failure(&self) {
        let _ = self.report(Health::Unhealthy, None);
    }

    /// Opens the circuit for `wait` (a long `Retry-After`), unless it is open longer already.
    ///
    /// The wait is the caller's to bound (the router caps it at `max_retry_after_s`); an
    /// absurd one saturates far in the future rather than overflowing the clock.
    pub fn cool_down(&self, wait: Duration) {
        let _ = self.report(Health::CoolDown(wait), None);
    }

    /// Frees the half-open slot if probe `id` is the one out: a probe from an earlier
    /// opening, ending late, must not let a second probe join the current one.
    fn release_probe(&self, id: u64) {
        self.lock().free_probe(id);
    }

    /// Takes in what one call said about the model (`probe` is its slot if the call was
    /// the half-open probe) and tells whether the circuit opened or closed because of it,
    /// in one step under the breaker's lock.
    pub(crate) fn report(&self, health: Health, probe: Option<ProbeGuard<'_>>) -> Transition {
        let probe = probe.map(|mut p| {
            p.reported = true;
            p.id
        });
        let mut guarded = self.lock();
        let before = guarded.state;
        match (health, probe) {
            (Health::Neutral, Some(id)) => guarded.free_probe(id),
            (Health::Neutral, None) => {}
            // A circuit the model asked to be left alone for (a cool-down) is closed by
            // its current probe's success only: a call let in before the cool-down, or an
            // earlier opening's probe, ending well does not countermand the model's
            // `Retry-After`. One opened by failures closes on any success, as the model
            // is answering again.
            (Health::Healthy, probe)
                if guarded.cooling
                    && !matches!(guarded.state, BreakerState::Closed { .. })
                    && probe != Some(guarded.probe) => {}
            (health, _) => {
                let was_open = matches!(guarded.state, BreakerState::Open { .. });
                guarded.state = self.next(guarded.state, health);
                let cool_down = matches!(health, Health::CoolDown(_));
                match guarded.state {
                    BreakerState::Closed { .. } => guarded.cooling = false,
                    BreakerState::Open { .. } if was_open => guarded.cooling |= cool_down,
                    BreakerState::Open { .. } => guarded.cooling = cool_down,
                    BreakerState::HalfOpen { .. } => {}
                }
            }
        }
        match guarded.state {
            after if after == before => Transition::None,
            BreakerState::Open { until } => {
                Transition::Opened(until.saturating_duration_since(Instant::now()))
            }
            BreakerState::Closed { failures: 0 }
                if !matches!(before, BreakerState::Closed { .. }) =>
            {
                Transition::Closed
            }
            _ => Transition::None,
        }
    }

    /// The state after a call that said `health` (not [`Health::Neutral`]) in `state`.
    fn next(&self, state: BreakerState, health: Health) -> BreakerState {
        match (health, state) {
            (Health::Healthy, _) => BreakerState::Closed { failures: 0 },
            (Health::Unhealthy, BreakerState::Closed { failures })
                if failures + 1 < self.threshold =>
            {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            (Health::Unhealthy, BreakerState::Open { until }) => BreakerState::Open {
                until: until.max(from_now(self.cooldown)),
            },
            (Health::Unhealthy, _) => BreakerState::Open {
                until: from_now(self.cooldown),
            },
            (Health::CoolDown(wait), state) => {
                let until = from_now(wait);
                match state {
                    BreakerState::Open { until: current } if current >= until => state,
                    _ => BreakerState::Open { until },
                }
            }
            (Health::Neutral, state) => state,
        }
    }
}

/// What one call says about a model's health, for its breaker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Health {
    /// The model answered.
    Healthy,
    /// The model failed in a way that counts toward opening its circuit.
    Unhealthy,
    /// Nothing about the model (a client error, a deadline of the caller's).
    Neutral,
    /// The model asked to be left alone for this long (a long `Retry-After`).
    CoolDown(Duration),
}

/// How a report changed the circuit, for a fleet that shares it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Transition {
    /// No opening or closing.
    None,
    /// The circuit is open for this much longer.
    Opened(Duration),
    /// The circuit closed after being open or half-open.
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_half_opens_and_closes() {
        let b = CircuitBreaker::new(3, Duration::from_secs(10));
        b.record_failure();
        b.record_failure();
        assert!(matches!(b.admit(), Admission::Allowed));
        b.record_failure();
        assert!(
            matches!(b.admit(), Admission::Rejected { retry_in: Some(d) } if d == Duration::from_secs(10))
        );

        tokio::time::advance(Duration::from_secs(10)).await;
        let Admission::Probe(probe) = b.admit() else {
            panic!("a probe after the cooldown")
        };
        assert!(
            matches!(b.admit(), Admission::Rejected { retry_in: None }),
            "one probe at a time"
        );
        probe.success();
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
    }

    /// A probe that outlives its opening (an LLM call longer than the cooldown) ends
    /// without a verdict while a later opening's probe is out: it must not free that
    /// probe's slot and let a second probe in beside it.
    #[tokio::test(start_paused = true)]
    async fn a_late_probe_from_an_earlier_opening_frees_no_slot_of_a_later_one() {
        let b = CircuitBreaker::new(1, Duration::from_secs(10));
        b.record_failure();
        tokio::time::advance(Duration::from_secs(10)).await;
        let Admission::Probe(old) = b.admit() else {
            panic!("a probe after the cooldown")
        };
        // Another call, let in before the circuit opened, fails: it opens again.
        b.record_failure();
        tokio::time::advance(Duration::from_secs(10)).await;
        let Admission::Probe(current) = b.admit() else {
            panic!("a probe after the second cooldown")
        };
        old.neutral();
        assert!(
            matches!(b.admit(), Admission::Rejected { retry_in: None }),
            "the current probe is still out"
        );
        drop(current);
        assert!(
            matches!(b.admit(), Admission::Probe(_)),
            "the current probe's own end frees the slot"
        );
    }

    /// Regression: any success closed the circuit, so a call let in before a long
    /// `Retry-After` opened it (LLM calls last seconds) closed it on ending well, and
    /// full traffic went back into the 429s; the fleet was told to close it too.
    #[tokio::test(start_paused = true)]
    async fn only_the_current_probe_closes_a_cool_down() {
        let b = CircuitBreaker::new(5, Duration::from_secs(10));
        b.record_failure();
        b.cool_down(Duration::from_secs(30));
        // A call that was in flight when the circuit opened ends well: it stays open.
        let early = Instant::now();
        assert_eq!(b.report(Health::Healthy, None), Transition::None);
        assert_eq!(
            b.state(),
            BreakerState::Open {
                until: early + Duration::from_secs(30)
            }
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        let Admission::Probe(probe) = b.admit() else {
            panic!("a probe after the cool-down")
        };
        // Half-open: a straggler's success still closes nothing, nor lets a probe in.
        b.record_success();
        assert_eq!(b.state(), BreakerState::HalfOpen { probing: true });
        assert_eq!(b.report(Health::Healthy, Some(probe)), Transition::Closed);
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
        // Closed, a success clears the failures in a row.
        b.record_failure();
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
    }

    /// A straggler's long `Retry-After` while the probe is out leaves the probe current:
    /// the straggler was sent before the probe, so the probe's answer is the later word
    /// on the model (and, in a fleet, the one probe out for every replica).
    #[tokio::test(start_paused = true)]
    async fn a_stragglers_cool_down_leaves_the_probe_out_current() {
        let b = CircuitBreaker::new(1, Duration::from_secs(10));
        b.cool_down(Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(10)).await;
        let Admission::Probe(probe) = b.admit() else {
            panic!("a probe after the cool-down")
        };
        b.cool_down(Duration::from_secs(60));
        assert_eq!(b.report(Health::Healthy, None), Transition::None);
        assert_eq!(b.report(Health::Healthy, Some(probe)), Transition::Closed);
    }

    /// A circuit opened by failures closes on any success, the model answering again:
    /// keeping it open for its cooldown would skip a flaky model that mostly answers
    /// (in the chaos test, two answers in three became one in four).
    #[tokio::test(start_paused = true)]
    async fn a_circuit_opened_by_failures_closes_on_a_stragglers_success() {
        let b = CircuitBreaker::new(2, Duration::from_secs(30));
        b.record_failure();
        b.record_failure();
        assert!(matches!(b.state(), BreakerState::Open { .. }));
        assert_eq!(b.report(Health::Healthy, None), Transition::Closed);
        // A cool-down after the failures makes it the model's wish: it stays.
        b.record_failure();
        b.record_failure();
        b.cool_down(Duration::from_secs(60));
        assert_eq!(b.report(Health::Healthy, None), Transition::None);
        // And a failure while cooling down leaves it a cool-down.
        b.record_failure();
        assert_eq!(b.report(Health::Healthy, None), Transition::None);
    }

    /// The probe out when a straggler's failure opened the circuit again is still the
    /// latest word on the model: its success closes it.
    #[tokio::test(start_paused = true)]
    async fn the_current_probe_closes_a_circuit_a_straggler_opened_again() {
        let b = CircuitBreaker::new(1, Duration::from_secs(10));
        b.record_failure();
        tokio::time::advance(Duration::from_secs(10)).await;
        let Admission::Probe(probe) = b.admit() else {
            panic!("a probe after the cooldown")
        };
        b.record_failure();
        assert!(matches!(b.state(), BreakerState::Open { .. }));
        probe.success();
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_and_a_dropped_probe_frees_the_slot() {
        let b = CircuitBreaker::new(1, Duration::from_secs(5));
        b.record_failure();
        tokio::time::advance(Duration::from_secs(5)).await;
        let Admission::Probe(probe) = b.admit() else {
            panic!()
        };
        probe.failure();
        assert!(matches!(b.admit(), Admission::Rejected { .. }));

        tokio::time::advance(Duration::from_secs(5)).await;
        let Admission::Probe(probe) = b.admit() else {
            panic!()
        };
        drop(probe); // a cancelled call
        assert!(matches!(b.admit(), Admission::Probe(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cool_down_opens_for_its_length() {
        let b = CircuitBreaker::new(5, Duration::from_secs(1));
        b.cool_down(Duration::from_secs(60));
        b.record_failure(); // does not shorten the cool-down
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(
            matches!(b.admit(), Admission::Rejected { retry_in: Some(d) } if d == Duration::from_secs(30))
        );
    }
}
