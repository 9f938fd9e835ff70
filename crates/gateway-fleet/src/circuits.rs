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

/// The fleet's circuits.
pub(crate) struct FleetCircuits {
    link: Arc<RedisLink>,
    /// How long a claimed probe stays claimed if its replica never reports (a crash).
    probe_lease: Duration,
    open: Script,
}

impl FleetCircuits {
    pub(crate) fn new(link: Arc<RedisLink>, probe_lease: Duration) -> Self {
        Self {
            link,
            probe_lease,
            open: Script::new(OPEN),
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
        let (_, probe) = self.keys(model);
        Box::pin(async move {
            let set = redis::cmd("SET")
                .arg(&probe)
                .arg("1")
                .arg("NX")
                .arg("PX")
                .arg(millis(self.probe_lease))
                .clone();
            match self.link.query::<Option<String>>(&set).await {
                Ok(taken) => taken.is_some(),
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
