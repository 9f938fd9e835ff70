//! The replica's connection to Redis: lazy, reconnecting, every command bounded.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use gateway_model::FleetConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, Script};

use crate::error::FleetError;
use crate::health::Health;

/// Why a command gave no answer.
#[derive(Debug)]
pub(crate) enum Unavailable {
    /// Redis is known to be down; it was not asked.
    Skipped,
    /// Redis failed or did not answer in time.
    Failed,
}

/// The connection in use, and what `reconnect` needs to know of it.
struct Current {
    manager: ConnectionManager,
    /// How many connections were replaced before this one.
    generation: u64,
    /// Whether it answered a command.
    answered: bool,
}

/// The link to Redis.
pub(crate) struct RedisLink {
    /// The connection commands go through, replaced after one gave no answer in time.
    current: Mutex<Current>,
    /// What a replacement is made from.
    client: redis::Client,
    manager_config: ConnectionManagerConfig,
    prefix: String,
    timeout: Duration,
    token_lock: Duration,
    health: Health,
}

impl RedisLink {
    /// A lazy link to `url`; nothing is sent until the first command.
    pub(crate) fn open(url: &str, config: &FleetConfig) -> Result<Self, FleetError> {
        let client = redis::Client::open(url).map_err(|e| FleetError::Url {
            kind: format!("{:?}", e.kind()),
        })?;
        let timeout = config.command_timeout();
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager =
            ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone())
                .map_err(|e| FleetError::Url {
                    kind: format!("{:?}", e.kind()),
                })?;
        Ok(Self {
            current: Mutex::new(Current {
                manager,
                generation: 0,
                answered: false,
            }),
            client,
            manager_config,
            prefix: config.key_prefix.clone(),
            timeout,
            token_lock: config.token_lock(),
            health: Health::new(),
        })
    }

    /// The key prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `prefix:name`.
    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// How long the token-fetch lock is held at most.
    pub(crate) fn token_lock(&self) -> Duration {
        self.token_lock
    }

    /// The link's health.
    pub(crate) fn health(&self) -> &Health {
        &self.health
    }

    /// Runs `script` with `keys` and `args` within the command timeout.
    pub(crate) async fn eval<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[String],
    ) -> Result<T, Unavailable> {
        if !self.health.may_try() {
            return Err(Unavailable::Skipped);
        }
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(arg.as_str());
        }
        let (mut connection, generation) = self.connection();
        self.settle(
            tokio::time::timeout(self.timeout, invocation.invoke_async(&mut connection)).await,
            generation,
        )
    }

    /// The connection to send a command on, and its generation.
    fn connection(&self) -> (ConnectionManager, u64) {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        (current.manager.clone(), current.generation)
    }

    /// Notes that the connection of `generation` answered a command.
    fn answered(&self, generation: u64) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.generation == generation {
            current.answered = true;
        }
    }

    /// Replaces the connection of `generation` after a command on it gave no answer in
    /// time (or was refused `READONLY`), if it is still the one in use and answered
    /// before. A peer gone silent (a
    /// failed-over Redis behind the same name, a dropped route) sends no reset, and the
    /// manager reconnects only on errors it sees as broken connections: without this,
    /// commands would time out on the dead socket until the kernel gave up on it, about
    /// 15 minutes later. A connection that never answered is still connecting (the
    /// manager bounds and retries that itself), and a command that timed out on an older
    /// one must not throw away its healthy replacement. The new one connects at its first
    /// command.
    fn reconnect(&self, generation: u64) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.generation != generation || !current.answered {
            return;
        }
        match ConnectionManager::new_lazy_with_config(
            self.client.clone(),
            self.manager_config.clone(),
        ) {
            Ok(fresh) => {
                *current = Current {
                    manager: fresh,
                    generation: generation.wrapping_add(1),
                    answered: false,
                };
            }
            Err(e) => tracing::debug!(kind = ?e.kind(), "could not make a new Redis connection"),
        }
    }

    fn settle<T>(
        &self,
        answer: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
        generation: u64,
    ) -> Result<T, Unavailable> {
        match answer {
            Ok(Ok(value)) => {
                self.answered(generation);
                self.health.succeeded();
                Ok(value)
            }
            Ok(Err(e)) => {
                // The error's kind and category only: its text may name the server.
                self.health.failed(&format!("{:?}", e.kind()));
                if e.is_timeout() {
                    self.reconnect(generation);
                } else if read_only(&e) {
                    // A primary demoted by a failover, still up: the name may now lead to
                    // the new primary, which only a new connection reaches.
                    self.answered(generation);
                    self.reconnect(generation);
                } else if matches!(e.kind(), redis::ErrorKind::Server(_)) {
                    // Redis answered (with an error of its own): the connection works.
                    self.answered(generation);
                }
                Err(Unavailable::Failed)
            }
            Err(_) => {
                self.health.failed("a command timed out");
                self.reconnect(generation);
                Err(Unavailable::Failed)
            }
        }
    }
}

/// Whether Redis refused a write as a read-only replica: `READONLY`, which Redis before 7
/// wraps in a script's `ERR` (its text still names it).
fn read_only(e: &redis::RedisError) -> bool {
    match e.kind() {
        redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly) => true,
        redis::ErrorKind::Server(_) => e.to_string().contains("READONLY"),
        _ => false,
    }
}
