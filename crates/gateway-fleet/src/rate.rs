//! One rate budget for the fleet: a GCRA cell in Redis, on Redis' own clock.

use std::sync::Arc;
use std::time::Duration;

use gateway_transport::{BoxFuture, Gcra, LocalRateBudget, RateBudget};
use redis::Script;

use crate::redis_link::RedisLink;

/// Longest wait asked of Redis, so microsecond counts stay exact in Lua's doubles.
const MAX_WAIT: Duration = Duration::from_secs(3_600);

/// Reserves the next slot: the wait in microseconds, or `-1 - wait` beyond `ARGV[3]`.
/// A stored value no replica writes (not a number, or later than `ARGV[4]` µs from now,
/// the farthest a replica sets) counts as none.
const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stored = redis.pcall('GET', KEYS[1])
local tat = type(stored) == 'string' and tonumber(stored) or now
if tat ~= tat or tat < now or tat > now + tonumber(ARGV[4]) then tat = now end
local send_at = tat - tonumber(ARGV[2])
if send_at < now then send_at = now end
local wait = send_at - now
if wait > tonumber(ARGV[3]) then return -1 - wait end
local next_tat = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.floor((next_tat - now) / 1000) + 1000)
return wait
";

/// Holds every slot back until `ARGV[1]` microseconds from now (plus the tolerance
/// `ARGV[2]`); a stored value no replica writes (see [`RESERVE`]) is written over.
const PAUSE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local later = now + tonumber(ARGV[1]) + tonumber(ARGV[2])
local stored = redis.pcall('GET', KEYS[1])
local tat = type(stored) == 'string' and tonumber(stored) or 0
if tat ~= tat or tat > now + tonumber(ARGV[3]) then tat = 0 end
if tat < later then
  redis.call('SET', KEYS[1], string.format('%d', later), 'PX', math.floor((later - now) / 1000) + 1000)
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
            reserve: Script::new(RESERVE),
            pause: Script::new(PAUSE),
        }
    }
}

/// The farthest from now, in microseconds, that a replica sets the next slot of `cell`:
/// a pause of [`MAX_WAIT`] plus the tolerance, or a reservation that waited that long
/// plus one interval.
fn farthest(cell: &Gcra) -> String {
    let longest = MAX_WAIT + cell.tolerance.min(MAX_WAIT) + cell.interval.min(MAX_WAIT);
    u64::try_from(longest.as_micros())
        .unwrap_or(u64::MAX)
        .to_string()
}

fn micros(d: Duration) -> String {
    u64::try_from(d.min(MAX_WAIT).as_micros())
        .unwrap_or(u64::MAX)
        .to_string()
}

impl RateBudget for FleetRate {
    fn reserve(&self, max_wait: Duration) -> BoxFuture<'_, Result<Duration, Duration>> {
        Box::pin(async move {
            let key = self.link.key("rate");
            let args = [
                micros(self.cell.interval),
                micros(self.cell.tolerance),
                micros(max_wait),
                self.farthest.clone(),
            ];
            match self.link.eval::<i64>(&self.reserve, &[&key], &args).await {
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
                micros(self.cell.tolerance),
                self.farthest.clone(),
            ];
            runtime.spawn(async move {
                let key = link.key("rate");
                let _: Result<i64, _> = link.eval(&script, &[&key], &args).await;
            });
        }
    }
}
