//! Program order per key: the writes and deletes of one key reach Redis in the order they
//! were issued.
//!
//! Each Redis call runs in its own task on one multiplexed connection, so commands leave in
//! issue order, but a command that is sent again (`NOSCRIPT` after a Redis restart or a
//! `SCRIPT FLUSH`: redis-rs loads the script and retries; a reconnect) can land after a later
//! one. `set(k, 'older', { tags })` then `set(k, 'newer')` left `older` in Redis that way. So
//! a write of a key takes a [`Ticket`] when it is issued (on the caller's thread) and waits,
//! before it sends anything, until the previous ticket of the same key was answered (at most
//! a bound: a write stuck longer than that has failed anyway).
//!
//! Costs one map insert and removal per write; writes of different keys never wait for each
//! other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// One write's turn.
#[derive(Default)]
struct Turn {
    done: AtomicBool,
    finished: Notify,
}

/// Capacity above which an empty map is replaced (its memory given back).
const SHRINK_ABOVE: usize = 1024;

/// The last issued turn of every key with a write in flight.
#[derive(Default)]
pub struct KeyOrder {
    tails: Mutex<HashMap<String, Arc<Turn>, ahash::RandomState>>,
}

/// A write's place in its key's order: wait for the previous one, then finish.
pub struct Ticket {
    key: String,
    previous: Option<Arc<Turn>>,
    mine: Arc<Turn>,
}

impl KeyOrder {
    /// Takes the next turn of `key` (call it in issue order, on the caller's thread).
    pub fn enter(&self, key: &str) -> Ticket {
        let mine = Arc::new(Turn::default());
        let previous = self.tails.lock().insert(key.to_string(), mine.clone());
        Ticket {
            key: key.to_string(),
            previous,
            mine,
        }
    }

    /// Keys with a write in flight.
    pub fn len(&self) -> usize {
        self.tails.lock().len()
    }

    /// Whether no write is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends `ticket`'s turn: the next write of its key may go.
    pub fn finish(&self, ticket: Ticket) {
        ticket.mine.done.store(true, Ordering::Release);
        ticket.mine.finished.notify_waiters();
        let mut tails = self.tails.lock();
        if tails
            .get(&ticket.key)
            .is_some_and(|t| Arc::ptr_eq(t, &ticket.mine))
        {
            tails.remove(&ticket.key);
            // a burst of writes in flight grows the map: give its capacity back once it drains
            if tails.is_empty() && tails.capacity() > SHRINK_ABOVE {
                *tails = HashMap::default();
            }
        }
    }
}

impl Ticket {
    /// Waits until the previous write of the key was answered, at most `bound`.
    pub async fn wait(&self, bound: Duration) {
        let Some(previous) = &self.previous else {
            return;
        };
        let notified = previous.finished.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if previous.done.load(Ordering::Acquire) {
            return;
        }
        let _ = tokio::time::timeout(bound, notified).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_later_write_of_the_key_waits_for_the_earlier_one() {
        let order = Arc::new(KeyOrder::default());
        let first = order.enter("k");
        let second = order.enter("k");
        let other = order.enter("x");
        // another key never waits
        tokio::time::timeout(Duration::from_secs(5), other.wait(Duration::from_secs(60)))
            .await
            .expect("another key does not wait");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let waiter = {
            let tx = tx.clone();
            tokio::spawn(async move {
                second.wait(Duration::from_secs(60)).await;
                tx.send("second").unwrap();
                second
            })
        };
        tokio::task::yield_now().await;
        tx.send("first").unwrap();
        order.finish(first);
        let second = waiter.await.unwrap();
        assert_eq!(rx.recv().await, Some("first"));
        assert_eq!(rx.recv().await, Some("second"));
        order.finish(second);
        order.finish(other);
        assert!(order.is_empty(), "finished keys are forgotten");
    }

    #[tokio::test]
    async fn a_stuck_write_holds_the_next_one_at_most_the_bound() {
        let order = KeyOrder::default();
        let _stuck = order.enter("k");
        let next = order.enter("k");
        tokio::time::timeout(Duration::from_secs(30), next.wait(Duration::from_millis(1)))
            .await
            .expect("bounded");
    }
}
