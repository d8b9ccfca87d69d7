//! Waiting for the other processes to confirm an invalidation.
//!
//! A `set`, `del` or `invalidateTag` announces itself on the bus with a sequence number
//! ([`crate::bus::encode_acked`]). `PUBLISH` reports how many subscribers received the message;
//! each of them applies it to its L1 and then acknowledges the sequence number (this process's
//! own subscriber too, locally). The write resolves once that many acknowledgements are in, or
//! after `bus.ackTimeout`, whichever comes first: a paused or overloaded process slows writes by
//! at most that bound and never fails them (a cache is a copy; the bus message still reaches it
//! when it runs again). After a timeout, later writes wait at most
//! [`crate::cache::SHORT_ACK_WAIT`] until one gets all of its acknowledgements again.
//!
//! An acknowledgement may arrive before Redis' reply to the write reaches this process (the
//! receivers are as fast as the reply), so a wait is opened *before* the write is sent and
//! counts acknowledgements from then on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// The open waits of one cache, by sequence number.
#[derive(Default)]
pub struct AckBook {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Wait>>>,
}

#[derive(Default)]
struct Wait {
    got: AtomicU64,
    arrived: Notify,
}

/// One open wait; dropping it closes the wait (later acknowledgements are ignored).
pub struct AckWait {
    seq: u64,
    wait: Arc<Wait>,
    book: Arc<AckBook>,
}

impl AckBook {
    /// Opens a wait for the acknowledgements of a message about to be published.
    pub fn open(self: &Arc<Self>) -> AckWait {
        let seq = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let wait = Arc::new(Wait::default());
        self.open.lock().insert(seq, wait.clone());
        AckWait {
            seq,
            wait,
            book: self.clone(),
        }
    }

    /// Counts an acknowledgement; one for a wait already closed (or unknown) is ignored.
    pub fn ack(&self, seq: u64) {
        let wait = self.open.lock().get(&seq).cloned();
        if let Some(wait) = wait {
            wait.got.fetch_add(1, Ordering::AcqRel);
            wait.arrived.notify_one();
        }
    }

    /// Waits open now.
    pub fn open_waits(&self) -> usize {
        self.open.lock().len()
    }
}

impl AckWait {
    /// The sequence number receivers acknowledge.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Waits until `expected` acknowledgements arrived (counting those already in) or `bound`
    /// passed. Returns whether all of them arrived.
    pub async fn all(self, expected: u64, bound: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            if self.wait.got.load(Ordering::Acquire) >= expected {
                return true;
            }
            // a notification sent between the check and this await is kept as a permit
            if tokio::time::timeout_at(deadline, self.wait.arrived.notified())
                .await
                .is_err()
            {
                return self.wait.got.load(Ordering::Acquire) >= expected;
            }
        }
    }
}

impl Drop for AckWait {
    fn drop(&mut self) {
        self.book.open.lock().remove(&self.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_early_and_late_acks_and_gives_up_at_the_bound() {
        let book = Arc::new(AckBook::default());
        let w = book.open();
        let seq = w.seq();
        book.ack(seq); // before the reply: counted
        let b = book.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            b.ack(seq);
        });
        assert!(w.all(2, Duration::from_secs(5)).await);
        assert_eq!(book.open_waits(), 0);
        book.ack(seq); // closed: ignored

        let w = book.open();
        book.ack(w.seq());
        let started = std::time::Instant::now();
        assert!(!w.all(2, Duration::from_millis(30)).await);
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(book.open_waits(), 0);

        let w = book.open();
        assert!(w.all(0, Duration::from_secs(5)).await);
        assert_eq!(book.open_waits(), 0);
    }

    #[tokio::test]
    async fn a_dropped_wait_is_closed() {
        let book = Arc::new(AckBook::default());
        let w = book.open();
        assert_eq!(book.open_waits(), 1);
        drop(w);
        assert_eq!(book.open_waits(), 0);
    }
}
