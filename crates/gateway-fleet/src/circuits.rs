//! Circuit state for the fleet: an open circuit at one replica is open at all of them,
//! and one replica at a time holds the half-open probe.

use std::sync::Arc;
use std::time::Duration;

use gateway_transport::{BoxFuture, SharedCircuits};
use redis::Script;

use crate::redis_link::RedisLink;
use crate::tokens::millis;

/// Opens `KEYS[1]` (the circuit) for `ARGV[1]` ms and frees `KEYS[2]` (the probe), at once.
const OPEN: &str = r"
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
redis.call('DEL', KEYS[2])
return 0
";

/// Claims the probe `KEYS[2]` for `ARGV[1]` ms, unless the circuit `KEYS[1]` is open
/// again (a probe that just failed reopened it): one check, so no second probe slips in
/// between another replica's failed probe and its reopening.
const CLAIM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 1 end
return 0
";

/// The fleet's circuits.
pub(crate) struct FleetCircuits {
    link: Arc<RedisLink>,
    /// How long a claimed probe stays claimed if its replica never reports (a crash).
    probe_lease: Duration,
    open: Script,
    claim: Script,
}

impl FleetCircuits {
    pub(crate) fn new(link: Arc<RedisLink>, probe_lease: Duration) -> Self {
        Self {
            link,
            probe_lease,
            open: Script::new(OPEN),
            claim: Script::new(CLAIM),
        }
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
        let (circuit, _) = self.keys(model);
        Box::pin(async move {
            let left: i64 = self
                .link
                .query(redis::cmd("PTTL").arg(&circuit))
                .await
                .ok()?;
            u64::try_from(left)
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
        })
    }

    fn claim_probe(&self, model: &str) -> BoxFuture<'_, bool> {
        let (circuit, probe) = self.keys(model);
        Box::pin(async move {
            let lease = millis(self.probe_lease).to_string();
            match self
                .link
                .eval::<i64>(&self.claim, &[&circuit, &probe], &[lease])
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
            let ms = millis(wait).to_string();
            let _: Result<i64, _> = self.link.eval(&self.open, &[&circuit, &probe], &[ms]).await;
        })
    }

    fn closed(&self, model: &str) -> BoxFuture<'_, ()> {
        let (circuit, probe) = self.keys(model);
        Box::pin(async move {
            let _: Result<i64, _> = self
                .link
                .query(redis::cmd("DEL").arg(&circuit).arg(&probe))
                .await;
        })
    }
}
