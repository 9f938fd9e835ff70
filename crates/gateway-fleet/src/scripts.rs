//! The Lua scripts more than one part of the fleet runs, and the rule they share: a value
//! no replica writes (another type, an expiry longer than any replica sets, or none) must
//! not stop the fleet for longer than a replica's own bound. The token and the rate cell
//! treat it as absent and write over it; a lock, a claim or a circuit's opening has its
//! expiry cut to that bound.

/// Takes `KEYS[1]` with the value `ARGV[1]` for `ARGV[2]` ms (1), unless it is held (0),
/// or unless `KEYS[2]`, when given, exists (0). A holder's key whose expiry is missing or
/// longer than `ARGV[2]` ms gets `ARGV[2]` ms: a lock or claim is never held longer.
pub(crate) const TAKE: &str = r"
if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
local left = redis.call('PTTL', KEYS[1])
if left == -1 or left > tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
";

/// Deletes `KEYS[1]` only if it still holds `ARGV[1]` (a lock, claim or circuit opening
/// of ours, a token refused); a key of another type is left alone.
pub(crate) const COMPARE_AND_DELETE: &str = r"
if redis.pcall('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// A value no other replica's lock or claim holds.
pub(crate) fn owner_value() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

/// Whole milliseconds, at least 1 and at most [`MAX_MILLIS`]: a script sets expiries
/// with them, and Redis refuses one past its clock's range, failing the whole script
/// (a `Fleet::circuits(Duration::MAX)` would fail every circuit read).
pub(crate) fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_MILLIS)
}

/// The longest a script is asked to keep anything: a year, far past any bound the
/// fleet keeps (a shared token's 48 h, a circuit's longest opening).
pub(crate) const MAX_MILLIS: u64 = 365 * 24 * 3_600 * 1_000;
