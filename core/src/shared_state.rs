//! A few numbers the JavaScript side reads from shared memory instead of asking through a
//! native call (each call costs more than the read it answers): the invalidation epoch, and
//! whether L1 has freed slots waiting to be cleared. Written by Rust (any thread) as `f64`
//! bits with atomic stores; the binding exposes the table as a `Float64Array`.

use std::sync::atomic::{AtomicU64, Ordering};

/// The slot of the invalidation epoch ([`crate::invalidation::InvalidationLog::epoch`]).
pub const EPOCH: usize = 0;
/// The slot of the count of L1 slots waiting for `take_freed`.
pub const FREED: usize = 1;
/// Slots in the table.
pub const LEN: usize = 2;

/// The table (see the module documentation).
pub struct StateTable {
    cells: Box<[AtomicU64]>,
}

impl Default for StateTable {
    fn default() -> Self {
        StateTable {
            cells: (0..LEN).map(|_| AtomicU64::new(0f64.to_bits())).collect(),
        }
    }
}

impl StateTable {
    /// Publishes `value` in slot `i`.
    pub fn set(&self, i: usize, value: u64) {
        self.cells[i].store((value as f64).to_bits(), Ordering::Release);
    }

    /// The value in slot `i`.
    pub fn get(&self, i: usize) -> u64 {
        f64::from_bits(self.cells[i].load(Ordering::Acquire)) as u64
    }

    /// The table's memory, for the binding's view: `LEN` f64 values.
    pub fn as_ptr(&self) -> *mut f64 {
        self.cells.as_ptr() as *mut f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_as_f64_bits() {
        let t = StateTable::default();
        assert_eq!(t.get(EPOCH), 0);
        t.set(EPOCH, 9_007_199_254_740_991);
        t.set(FREED, 3);
        assert_eq!(t.get(EPOCH), 9_007_199_254_740_991);
        // what JS reads
        let view = unsafe { std::slice::from_raw_parts(t.as_ptr() as *const f64, LEN) };
        assert_eq!(view, &[9_007_199_254_740_991.0, 3.0]);
    }
}
