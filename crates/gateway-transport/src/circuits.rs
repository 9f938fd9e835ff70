//! Circuit state shared beyond one process: a fleet's replicas see one another's open
//! circuits, and only one of them sends the half-open probe.

use std::time::Duration;

use crate::bearer::BoxFuture;

/// Circuit state shared across replicas (a router keeps its own breakers and consults
/// this before each model; `gateway-fleet` implements it on Redis).
///
/// Implementations answer within a bound of their own and, when they cannot, answer as
/// if nothing were shared (`None`, `true`), so a call never waits on them.
pub trait SharedCircuits: Send + Sync + 'static {
    /// How much longer `model`'s circuit is open across the fleet, if it is.
    fn open_for(&self, model: &str) -> BoxFuture<'_, Option<Duration>>;

    /// Claims the one half-open probe of `model` as `claim` (a number no other claim of
    /// this process uses); `false` if another claim, here or at another replica, has it.
    fn claim_probe(&self, model: &str, claim: u64) -> BoxFuture<'_, bool>;

    /// `model`'s circuit opened here for `wait`: opens it across the fleet.
    fn opened(&self, model: &str, wait: Duration) -> BoxFuture<'_, ()>;

    /// The probe claimed as `claim` for `model` ended without a verdict (a client error,
    /// a policy refusal, a call cancelled, even while the claim was being made) or with a
    /// success: lets another probe go now rather than when the claim lapses. A later
    /// claim, or one never granted, is left alone.
    fn released(&self, model: &str, claim: u64) -> BoxFuture<'_, ()>;

    /// `model`'s circuit closed here (a probe succeeded, or a call after an opening by
    /// failures): ends the opening this replica made across the fleet; one another
    /// replica made stands.
    fn closed(&self, model: &str) -> BoxFuture<'_, ()>;
}
