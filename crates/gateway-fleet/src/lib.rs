//! Fleet mode: several router replicas act as one Genesys Cloud OAuth client, sharing
//! state through Redis (or Valkey: the same protocol).
//!
//! - **One token** ([`Fleet::tokens`]): the access token and its expiry are cached in
//!   Redis; one replica fetches while the others wait for it, under a lock with a
//!   timeout (a crashed fetcher blocks nobody for longer than `token_lock_ms`). A 401
//!   refresh goes through the same lock, so the fleet fetches once. A replica uses its
//!   copy without asking Redis for [`TOKEN_RECHECK`] at most (never past its expiry);
//!   then it reads Redis again and, if Redis lost the token (a restart), shares its copy
//!   again instead of logging in, so replicas that start later find that token too.
//!   Once the token reaches its fetcher's refresh point, the first replica to read it
//!   renews it in the background while every call goes on with it, so under traffic a
//!   rollover makes no call wait for a login (a failed renewal is tried again by the
//!   fleet every 10 s; a fleet idle through the refresh margin logs in on its next call).
//!   Whoever can read the keys can use the token: protect them with Redis ACLs and TLS
//!   (`rediss://`).
//! - **One rate budget** ([`Fleet::rate_budget`]): `[limits] requests_per_minute` as one
//!   GCRA cell in Redis, updated atomically by a Lua script on Redis' own clock; a 429 or
//!   a spent `inin-ratelimit-*` window seen by one replica pauses all of them.
//! - **Shared circuits** ([`Fleet::circuits`]): a model's open circuit, with its
//!   cool-down (the longest any replica asked for), is seen by every replica within
//!   2 ms (a replica trusts its last reading of a circuit that long, so the calls that
//!   come meanwhile share one Redis read);
//!   after the cool-down one replica claims the half-open probe, in Redis, and the
//!   others keep skipping the model until it reports (a probe that ends without a
//!   verdict or with a success, or whose call is dropped, frees its claim at once, and
//!   only its own; a replica's close ends only its own opening).
//! - **Values no replica writes** (another type, an expiry longer than any replica sets
//!   or none, text where a number goes, a token over `MAX_ACCESS_TOKEN_BYTES`) neither
//!   degrade the replica nor hold a model, the rate budget or the token lock past a
//!   replica's own bound. The token key and the rate cell pass over such a value and
//!   write over it; a token lock or probe claim holding one has its expiry cut to the
//!   lock's or claim's own and lapses within it; a model's circuit key counts as an open
//!   circuit whatever it holds (a list, `1` with no expiry), its opening cut to
//!   `longest_circuit_opening` (180 s by default), so the model is skipped that long at
//!   most.
//! - **Redis down**: every command is bounded by `command_timeout_ms`; on failure the
//!   replica uses local state (its own token, a local pace of `requests_per_minute /
//!   replicas`), sets the `genesys_router_fleet_degraded` gauge to 1 and warns once,
//!   tries Redis again at most once a second, and rejoins by itself.
//!
//! A router takes the fleet through its builder (`gateway-fleet` depends on the
//! transport, never on the router):
//!
//! ```no_run
//! # async fn run(config: gateway_model::RouterConfig) -> Result<(), Box<dyn std::error::Error>> {
//! let mut builder = gateway_router::Router::builder(config.clone());
//! if let Some(fleet) = gateway_fleet::Fleet::from_config(&config)? {
//!     let tokens = fleet.clone();
//!     builder = builder
//!         .token_layer(move |local| tokens.tokens(local))
//!         .shared_circuits(fleet.circuits(config.longest_circuit_opening()));
//!     if let Some(budget) = fleet.rate_budget() {
//!         builder = builder.rate_budget(budget);
//!     }
//! }
//! let router = builder.build().await?;
//! # Ok(()) }
//! ```

mod circuits;
mod error;
mod health;
mod rate;
mod redis_link;
mod scripts;
mod token_store;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use gateway_model::{FleetConfig, LimitsConfig, RouterConfig};
use gateway_transport::{RateBudget, SharedCircuits, TokenSource};

pub use error::FleetError;
pub use tokens::TOKEN_RECHECK;

use redis_link::RedisLink;

/// A replica's handle on the fleet's shared state. Cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    link: Arc<RedisLink>,
    limits: LimitsConfig,
    replicas: u32,
    token_recheck: Duration,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("key_prefix", &self.link.prefix())
            .field("degraded", &self.is_degraded())
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// The fleet a config's `[fleet]` section describes, reading the Redis URL from the
    /// env var it names; `None` without a `[fleet]` section (nothing connects then).
    pub fn from_config(config: &RouterConfig) -> Result<Option<Self>, FleetError> {
        let Some(fleet) = &config.fleet else {
            return Ok(None);
        };
        let url = gateway_model::env_var(&fleet.redis_url_env).map_err(|reason| {
            FleetError::UrlEnvUnset {
                env: fleet.redis_url_env.clone(),
                reason,
            }
        })?;
        Self::connect(&url, fleet, &config.limits)
            .map(Some)
            .map_err(|e| match e {
                FleetError::Url { kind } => FleetError::UrlInEnv {
                    env: fleet.redis_url_env.clone(),
                    kind,
                },
                other => other,
            })
    }

    /// A fleet on the Redis at `url` (`redis://` or `rediss://`). Connects lazily: a
    /// Redis that is down now is a degraded fleet, not an error.
    pub fn connect(
        url: &str,
        fleet: &FleetConfig,
        limits: &LimitsConfig,
    ) -> Result<Self, FleetError> {
        Ok(Self {
            link: Arc::new(RedisLink::open(url, fleet)?),
            limits: limits.clone(),
            replicas: fleet.replicas.max(1),
            token_recheck: TOKEN_RECHECK,
        })
    }

    /// The same fleet, whose token sources ([`Fleet::tokens`]) use their copy of the
    /// shared token for `every` at most before asking Redis again ([`TOKEN_RECHECK`]
    /// unless set; zero asks on every call).
    #[must_use]
    pub fn with_token_recheck(mut self, every: Duration) -> Self {
        self.token_recheck = every;
        self
    }

    /// A token source giving every replica the fleet's one token; `local` fetches it
    /// (and stands in while Redis is down).
    pub fn tokens(&self, local: Arc<dyn TokenSource>) -> Arc<dyn TokenSource> {
        Arc::new(tokens::FleetTokens::new(
            Arc::clone(&self.link),
            local,
            self.token_recheck,
        ))
    }

    /// The fleet's shared pace, if `[limits] requests_per_minute` is set.
    pub fn rate_budget(&self) -> Option<Arc<dyn RateBudget>> {
        let per_minute = self.limits.requests_per_minute?;
        let budget = rate::FleetRate::new(
            Arc::clone(&self.link),
            per_minute,
            self.limits.rate_burst,
            self.replicas,
        );
        Some(Arc::new(budget))
    }

    /// The fleet's circuit state: an open circuit at one replica is open at all, and
    /// one replica sends the half-open probe (its claim lasts a call's deadline at most).
    /// `longest_open` is the longest a replica opens a circuit for
    /// ([`RouterConfig::longest_circuit_opening`]): an opening found in Redis that is
    /// longer, or never ends, is cut to it.
    pub fn circuits(&self, longest_open: Duration) -> Arc<dyn SharedCircuits> {
        let lease = Duration::from_millis(self.limits.deadline_ms);
        Arc::new(circuits::FleetCircuits::new(
            Arc::clone(&self.link),
            lease,
            longest_open,
        ))
    }

    /// Whether this replica runs on local state because Redis cannot be reached.
    pub fn is_degraded(&self) -> bool {
        self.link.health().is_degraded()
    }
}
