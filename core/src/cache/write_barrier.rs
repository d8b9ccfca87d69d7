//! The write barrier: an invalidation waits until the writes issued before it were answered.
//!
//! Writes register on the JS thread, in issue order ([`WriteBarrier::begin`]); the tokio tasks
//! that carry them to Redis end them, and the task of an invalidation waits on them.

use std::time::Duration;

use parking_lot::Mutex;

/// Orders invalidations after the writes issued before them.
///
/// Each Redis call runs in its own task, so two calls issued one after the other may reach
/// Redis in the other order. For a write followed by an invalidation of the same data that
/// would let the older value survive the invalidation; so an invalidation first waits (within
/// the command bound) until every write issued before it has been answered. (A write after an
/// invalidation needs no such care: at worst it lands first and is deleted, a miss.)
#[derive(Default)]
pub(super) struct WriteBarrier {
    /// (next sequence number, writes in flight)
    state: Mutex<(u64, std::collections::BTreeSet<u64>)>,
    changed: tokio::sync::Notify,
}

impl WriteBarrier {
    /// Registers a write (on the caller's thread, in issue order).
    pub(super) fn begin(&self) -> u64 {
        let mut s = self.state.lock();
        let seq = s.0;
        s.0 += 1;
        s.1.insert(seq);
        seq
    }

    /// The write `seq` was answered (or failed).
    pub(super) fn end(&self, seq: u64) {
        self.state.lock().1.remove(&seq);
        self.changed.notify_waiters();
    }

    /// Everything issued so far: what an invalidation issued now must wait for.
    pub(super) fn issued(&self) -> u64 {
        self.state.lock().0
    }

    /// Waits until every write numbered below `upto` was answered, at most `bound`.
    pub(super) async fn wait_for(&self, upto: u64, bound: Duration) {
        let deadline = tokio::time::Instant::now() + bound;
        // bounded: every round ends at a notification or the deadline
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self
                .state
                .lock()
                .1
                .first()
                .is_none_or(|first| *first >= upto)
            {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}
