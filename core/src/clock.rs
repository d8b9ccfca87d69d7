//! Wall-clock time as the crate sends it to Redis: Unix milliseconds (expiries, envelopes) and
//! microseconds (the floor of the invalidation clock).
//!
//! A leaf: it imports nothing of the crate, so any module can read the time without depending
//! on another. Called from any thread.

use std::time::{SystemTime, UNIX_EPOCH};

/// Current wall-clock time in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Wall-clock microseconds since the Unix epoch (the floor of the invalidation clock).
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
