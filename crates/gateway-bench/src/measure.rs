//! Process measurements from `/proc`: CPU time and resident memory, for this process or
//! another one (the simulator, the sidecar).

use std::time::Duration;

/// CPU time (user + system, every thread) and memory of a process at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// User plus system CPU time so far.
    pub cpu: Duration,
    /// Resident memory now, in bytes.
    pub rss: u64,
    /// The most resident memory so far (`VmHWM`), in bytes.
    pub peak_rss: u64,
}

/// Clock ticks per second for `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux),
/// asked once, so that samples taken together are not a process start apart.
fn ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// Samples process `pid` (`"self"` for this one). `None` if `/proc` cannot be read.
pub fn sample(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields start after the closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = ticks_per_second().max(1);
    // Numbers read from /proc: summed and converted without overflow or panic.
    let secs = utime.saturating_add(stime) as f64 / ticks as f64;
    let cpu = Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX);

    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb.saturating_mul(1024))
    };
    Some(ProcSample {
        cpu,
        rss: kb("VmRSS:"),
        peak_rss: kb("VmHWM:"),
    })
}

/// Bytes to MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample("self").expect("/proc is readable on Linux");
        assert!(s.rss > 0 && s.peak_rss >= s.rss);
    }
}
