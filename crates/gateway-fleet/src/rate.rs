//! One rate budget for the fleet: a GCRA cell in Redis, on Redis' own clock.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gateway_transport::{BoxFuture, Gcra, LocalRateBudget, RateBudget};
use redis::Script;
use tokio::time::Instant;

use crate::redis_link::RedisLink;

/// Longest wait asked of Redis, so microsecond counts stay exact in Lua's doubles.
const MAX_WAIT: Duration = Duration::from_secs(3_600);
/// Most slots waiting to be given back (each one interval; more than a pace holds
/// changes nothing).
const MAX_GIVEN_BACK: usize = 1_024;

/// Reserves the next slot: the wait in microseconds, or `-1 - wait` beyond `ARGV[3]`.
/// First it gives back `ARGV[5]` slots granted for requests never sent: the next slot
/// comes that many intervals sooner, but never before a pause the gateway asked for
/// (`KEYS[2]`). A stored value no replica writes (not a number, or later than `ARGV[4]`
/// µs from now, the farthest a replica sets) counts as none.
const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function read(key)
  local stored = redis.pcall('GET', key)
  local v = type(stored) == 'string' and tonumber(stored) or nil
  if v == nil or v ~= v or v < now or v > now + tonumber(ARGV[4]) then return now end
  return v
end
local function store(v)
  redis.call('SET', KEYS[1], string.format('%d', v), 'PX', math.floor((v - now) / 1000) + 1000)
end
local tat = read(KEYS[1])
local give = tonumber(ARGV[5])
if give > 0 then
  tat = math.max(tat - give * tonumber(ARGV[1]), read(KEYS[2]))
end
local send_at = tat - tonumber(ARGV[2])
if send_at < now then send_at = now end
local wait = send_at - now
if wait > tonumber(ARGV[3]) then
  if give > 0 then store(tat) end
  return -1 - wait
end
store(tat + tonumber(ARGV[1]))
return wait
";

/// Holds every slot back until `ARGV[1]` microseconds from now (plus the tolerance
/// `ARGV[2]`), and keeps that end (`KEYS[2]`) so no slot given back goes before it; a
/// stored value no replica writes (see [`RESERVE`]) is written over.
const PAUSE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local later = now + tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  local stored = redis.pcall('GET', key)
  local v = type(stored) == 'string' and tonumber(stored) or 0
  if v ~= v or v > now + tonumber(ARGV[3]) then v = 0 end
  if v < later then
    redis.call('SET', key, string.format('%d', later), 'PX', math.floor((later - now) / 1000) + 1000)
  end
end
return 0
";

/// The fleet's rate budget, with a local one at `1 / replicas` of the pace for when
/// Redis is down.
pub(crate) struct FleetRate {
    link: Arc<RedisLink>,
    cell: Gcra,
    /// [`farthest`] for `cell`, as the scripts take it.
    farthest: String,
    local: LocalRateBudget,
    /// When the slots granted for requests never sent were due: given back by this
    /// replica's next reservation (to Redis, or to the local budget if Redis cannot be
    /// asked), those whose time has not come by then.
    given_back: Mutex<Vec<Instant>>,
    reserve: Script,
    pause: Script,
}

impl FleetRate {
    pub(crate) fn new(link: Arc<RedisLink>, per_minute: u32, burst: u32, replicas: u32) -> Self {
        let share = (per_minute / replicas.max(1)).max(1);
        let cell = Gcra::new(per_minute, burst);
        Self {
            link,
            farthest: farthest(&cell),
            cell,
            local: LocalRateBudget::new(share, burst / replicas.max(1)),
            given_back: Mutex::new(Vec::new()),
            reserve: Script::new(RESERVE),
            pause: Script::new(PAUSE),
        }
    }
}

/// The farthest from now, in microseconds, that a replica sets the next slot of `cell`:
/// a pause of [`MAX_WAIT`] plus the tolerance, or a reservation that waited that long
/// plus one interval.
fn farthest(cell: &Gcra) -> String {
    let longest = MAX_WAIT + cell.tolerance.min(MAX_TOLERANCE) + cell.interval.min(MAX_WAIT);
    micros_within(longest, longest)
}

/// `d` in whole microseconds, at most [`MAX_WAIT`].
fn micros(d: Duration) -> String {
    micros_within(d, MAX_WAIT)
}

/// `d` in whole microseconds, at most `cap`.
fn micros_within(d: Duration, cap: Duration) -> String {
    u64::try_from(d.min(cap).as_micros())
        .unwrap_or(u64::MAX)
        .to_string()
}

/// The largest burst tolerance a configuration can give: 100,000 calls
/// (`rate_burst`) at one a minute. Sent whole, not cut to [`MAX_WAIT`] as a wait is,
/// so the fleet lets as many calls through at once as one replica's own pacer would.
const MAX_TOLERANCE: Duration = Duration::from_secs(100_000 * 60);

impl RateBudget for FleetRate {
    fn reserve(&self, max_wait: Duration) -> BoxFuture<'_, Result<Duration, Duration>> {
        Box::pin(async move {
            let keys = [self.link.key("rate"), self.link.key("rate:paused")];
            // A slot whose time passed meanwhile is kept: the pace has moved past it.
            let now = Instant::now();
            let mut given_back = std::mem::take(
                &mut *self
                    .given_back
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            given_back.retain(|due| *due > now);
            let args = [
                micros(self.cell.interval),
                micros_within(self.cell.tolerance, MAX_TOLERANCE),
                micros(max_wait),
                self.farthest.clone(),
                given_back.len().to_string(),
            ];
            let keys = [keys[0].as_str(), keys[1].as_str()];
            let asked = self.link.eval::<i64>(&self.reserve, &keys, &args).await;
            if asked.is_err() {
                for due in given_back {
                    self.local.release(due);
                }
            }
            match asked {
                Ok(wait) if wait >= 0 => {
                    Ok(Duration::from_micros(wait.unsigned_abs()).min(max_wait))
                }
                Ok(refused) => Err(
                    Duration::from_micros(refused.saturating_add(1).unsigned_abs()).min(MAX_WAIT),
                ),
                Err(_) => self.local.try_reserve(max_wait),
            }
        })
    }

    fn pause(&self, wait: Duration) {
        self.local.pause(wait);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let link = Arc::clone(&self.link);
            let script = self.pause.clone();
            let args = [
                micros(wait),
                micros_within(self.cell.tolerance, MAX_TOLERANCE),
                self.farthest.clone(),
            ];
            runtime.spawn(async move {
                let keys = [link.key("rate"), link.key("rate:paused")];
                let keys = [keys[0].as_str(), keys[1].as_str()];
                let _: Result<i64, _> = link.eval(&script, &keys, &args).await;
            });
        }
    }

    /// Kept here, and given back by the next reservation if its time has not come by
    /// then: the same script as the reservation, so no round trip of its own.
    fn release(&self, due: Instant) {
        let mut given_back = self
            .given_back
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if given_back.len() < MAX_GIVEN_BACK {
            given_back.push(due);
        }
    }
}
