//! Runs a command as if its disk were full, without a full disk.

use std::process::Command;

/// `command` run through `sh` with a file size limit of 0 and `SIGXFSZ` ignored (which
/// `exec` keeps): every write to a regular file fails with `EFBIG`, while standard
/// output and error, pipes here, still work.
pub fn with_no_room(command: &Command) -> Command {
    let mut limited = Command::new("sh");
    limited
        .args(["-c", r#"trap "" XFSZ; ulimit -f 0; exec "$0" "$@""#])
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => limited.env(key, value),
            None => limited.env_remove(key),
        };
    }
    limited
}
