//! A child process that a test kills if it ends, or fails, while the child still runs.

use std::ops::{Deref, DerefMut};
use std::process::{Child, Command};

/// A started child, killed and reaped on drop unless it has exited: a failed assertion
/// leaves no `serve` or `route` running behind the test.
pub struct Spawned(Child);

impl Spawned {
    /// Starts `command`, failing the test if it cannot.
    pub fn start(command: &mut Command) -> Self {
        Self(command.spawn().expect("the binary starts"))
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
