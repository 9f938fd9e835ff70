//! A child process that a test kills if it ends, or fails, while the child still runs.

use std::ops::{Deref, DerefMut};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

/// A started child, killed and reaped on drop unless it has exited: a failed assertion
/// leaves no `serve` or `route` running behind the test.
pub struct Spawned(Child);

impl Spawned {
    /// Starts `command`, failing the test if it cannot.
    pub fn start(command: &mut Command) -> Self {
        Self(command.spawn().expect("the binary starts"))
    }
}

impl Spawned {
    /// Waits (at most `limit`) for the child to exit, polling without blocking the
    /// runtime, so a child that does not end fails the test and is killed as its guard
    /// drops (a blocking `wait` would instead hold the test's runtime open for good).
    pub async fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let started = tokio::time::Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().expect("the child's status") {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "the process did not end within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Deref for Spawned {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
