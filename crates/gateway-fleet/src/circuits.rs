//! Circuit state for the fleet: an open circuit at one replica is open at all of them,
//! and one replica at a time holds the half-open probe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gateway_transport::clock::later;
use gateway_transport::{BoxFuture, SharedCircuits};
use redis::Script;
use tokio::time::Instant;

use crate::redis_link::RedisLink;
use crate::scripts::{COMPARE_AND_DELETE, TAKE, millis, owner_value};

/// Opens `KEYS[1]` (the circuit) for `ARGV[1]` ms as replica `ARGV[3]`'s opening, unless
/// another replica opened it for longer (up to the longest a replica makes, `ARGV[2]`
/// ms), and frees `KEYS[2]` (the probe), at once. An opening never shortens another: a
/// long `Retry-After` seen by one replica stands against a short cool-down at another.
const OPEN: &str = r"
local wait = tonumber(ARGV[1])
local left = redis.call('PTTL', KEYS[1])
if left < wait or left > tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', wait)
end
redis.call('DEL', KEYS[2])
return 0
";

/// How long the circuit `KEYS[1]` stays open (its `PTTL`), after bringing an opening
/// longer than any replica makes (`ARGV[1]` ms), or one that never expires, down to that.
const READ: &str = r"
local left = redis.call('PTTL', KEYS[1])
if left == -1 or left > tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return tonumber(ARGV[1])
end
return left
";

/// How long a replica trusts what it last read of a model's circuit: another replica's
/// opening reaches it within this (plus a round trip), and the calls that want the
/// circuit meanwhile share one read instead of making one each.
const FRESH_FOR: Duration = Duration::from_millis(2);

/// What a replica last read of one model's circuit.
#[derive(Clone, Copy)]
struct Reading {
    /// When the answer came.
    answered_at: Instant,
    /// Until when the circuit was open, as far as that answer said.
    open_until: Option<Instant>,
}

impl Reading {
    /// Whether the reading may still stand for the circuit at `now`.
    fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.answered_at) < FRESH_FOR
    }

    /// The circuit's open time left at `now`, as far as this reading says.
    fn open_left(&self, now: Instant) -> Option<Duration> {
        self.open_until
            .map(|until| until.saturating_duration_since(now))
            .filter(|left| !left.is_zero())
    }
}

/// One model's reading: the last one while fresh, or the one under way, which every
/// call that wants the circuit meanwhile waits for (all are woken when it comes).
type Slot = Arc<tokio::sync::OnceCell<Reading>>;

/// The fleet's circuits.
pub(crate) struct FleetCircuits {
    link: Arc<RedisLink>,
    /// How long a claimed probe stays claimed if its replica never reports (a crash).
    probe_lease: Duration,
    /// The longest a replica opens a circuit for: a longer opening read from Redis is
    /// brought down to it.
    longest_open: Duration,
    /// What identifies this replica's probe claims (with each claim's number), so that
    /// a claim frees only itself.
    owner: String,
    open: Script,
    read: Script,
    take: Script,
    compare_and_delete: Script,
    /// Each model's reading, made on its first call (the models are the config's).
    readings: Mutex<HashMap<String, Slot>>,
}

impl FleetCircuits {
    pub(crate) fn new(link: Arc<RedisLink>, probe_lease: Duration, longest_open: Duration) -> Self {
        Self {
            link,
            probe_lease,
            longest_open,
            owner: owner_value(),
            open: Script::new(OPEN),
            read: Script::new(READ),
            take: Script::new(TAKE),
            compare_and_delete: Script::new(COMPARE_AND_DELETE),
            readings: Mutex::new(HashMap::new()),
        }
    }

    /// The reading of `model`'s circuit to use at `now`: the last one if it is fresh or
    /// still under way, else a new one to take.
    fn slot(&self, model: &str, now: Instant) -> Slot {
        let mut readings = self.readings.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = match readings.get_mut(model) {
            Some(slot) => slot,
            None => readings.entry(model.to_owned()).or_default(),
        };
        if slot.get().is_some_and(|reading| !reading.is_fresh(now)) {
            *slot = Slot::default();
        }
        Arc::clone(slot)
    }

    /// Asks Redis how long `model`'s circuit stays open; `None` when it is closed or
    /// Redis cannot say (the replica's own breaker decides then).
    async fn read(&self, model: &str) -> Option<Duration> {
        let (circuit, _) = self.keys(model);
        let longest = millis(self.longest_open).to_string();
        let left: i64 = self
            .link
            .eval(&self.read, &[&circuit], &[longest])
            .await
            .ok()?;
        // The script caps what it answers; a server that only looks like Redis may not.
        u64::try_from(left)
            .ok()
            .filter(|ms| *ms > 0)
            .map(|ms| Duration::from_millis(ms).min(self.longest_open))
    }

    /// What the probe key holds while `claim` has it.
    fn claim_value(&self, claim: u64) -> String {
        format!("{}:{claim}", self.owner)
    }

    fn keys(&self, model: &str) -> (String, String) {
        (
            self.link.key(&format!("circuit:{model}")),
            self.link.key(&format!("probe:{model}")),
        )
    }
}

impl SharedCircuits for FleetCircuits {
    fn open_for(&self, model: &str) -> BoxFuture<'_, Option<Duration>> {
        let now = Instant::now();
        let slot = self.slot(model, now);
        if let Some(reading) = slot.get() {
            return Box::pin(std::future::ready(reading.open_left(now)));
        }
        let model = model.to_owned();
        if self.link.health().is_degraded() {
            // Redis unreachable for now: the link lets one command a second through, and
            // that one may wait out its timeout. Each call asks on its own (the others
            // are answered at once) rather than all waiting on the one reading.
            return Box::pin(async move { self.read(&model).await });
        }
        Box::pin(async move {
            let reading = slot
                .get_or_init(|| async {
                    let left = self.read(&model).await;
                    let answered_at = Instant::now();
                    Reading {
                        answered_at,
                        open_until: left.map(|left| later(answered_at, left)),
                    }
                })
                .await;
            reading.open_left(Instant::now())
        })
    }

    fn claim_probe(&self, model: &str, claim: u64) -> BoxFuture<'_, bool> {
        let (circuit, probe) = self.keys(model);
        Box::pin(async move {
            // One script checks the circuit and claims the probe, so no second probe
            // slips in between another replica's failed probe and its reopening.
            let lease = millis(self.probe_lease).to_string();
            match self
                .link
                .eval::<i64>(
                    &self.take,
                    &[&probe, &circuit],
                    &[self.claim_value(claim), lease],
                )
                .await
            {
                Ok(taken) => taken == 1,
                // Without Redis the replica's own breaker decides.
                Err(_) => true,
            }
        })
    }

    fn opened(&self, model: &str, wait: Duration) -> BoxFuture<'_, ()> {
        let (circuit, probe) = self.keys(model);
        Box::pin(async move {
            let longest = millis(self.longest_open.max(wait)).to_string();
            let ms = millis(wait).to_string();
            let _: Result<i64, _> = self
                .link
                .eval(
                    &self.open,
                    &[&circuit, &probe],
                    &[ms, longest, self.owner.clone()],
                )
                .await;
        })
    }

    fn released(&self, model: &str, claim: u64) -> BoxFuture<'_, ()> {
        let (_, probe) = self.keys(model);
        Box::pin(async move {
            let value = self.claim_value(claim);
            let _: Result<i64, _> = self
                .link
                .eval(&self.compare_and_delete, &[&probe], &[value])
                .await;
        })
    }

    /// Ends this replica's own opening only (the circuit key holds its opener's id): a
    /// close here (a probe's success, or a late success after an opening by failures)
    /// does not end an opening another replica made, such as a longer `Retry-After` it
    /// saw.
    fn closed(&self, model: &str) -> BoxFuture<'_, ()> {
        let (circuit, _) = self.keys(model);
        Box::pin(async move {
            let owner = self.owner.clone();
            let _: Result<i64, _> = self
                .link
                .eval(&self.compare_and_delete, &[&circuit], &[owner])
                .await;
        })
    }
}
