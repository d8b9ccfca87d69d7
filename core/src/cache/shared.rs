//! The state a cache shares with its tokio tasks: the completion queue, the coherence of L1
//! with invalidations (the `settled_*` family), and the handling of bus messages and
//! acknowledgements.
//!
//! [`Shared`] is reached from every thread: the JS thread fills L1, drains the completion queue
//! and applies local invalidations; tokio tasks queue completions and settle invalidations once
//! Redis answered; the bus task calls its [`BusHandler`] methods.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use super::completion::{Completion, Notifier, Outcome};
use super::write_barrier::WriteBarrier;
use crate::acks::{AckBook, AckWait};
use crate::bus::{BusEvent, BusHandler};
use crate::invalidation::InvalidationLog;
use crate::key_order::KeyOrder;
use crate::l1::L1;
use crate::l2::{Replay, L2};
use crate::lock::Waiters;
use crate::metrics::{Latencies, Metrics};
use crate::tag_versions::TagVersions;

/// What a cache shares with the tasks it spawns and with its bus subscriber (see the module
/// documentation for who touches what, from which thread).
pub(super) struct Shared {
    pub(super) l1: Option<Arc<L1>>,
    pub(super) queue: Mutex<Vec<Completion>>,
    pub(super) notify: Notifier,
    pub(super) metrics: Metrics,
    pub(super) latencies: Latencies,
    pub(super) log: InvalidationLog,
    /// Held while the log is checked and L1 filled, and while an invalidation is recorded and
    /// applied to L1: a fill (JS thread) and an invalidation (I/O thread) are each atomic to
    /// the other, so a copy checked before the record is inserted before the removal.
    pub(super) coherence: Mutex<()>,
    pub(super) waiters: Waiters,
    pub(super) in_flight: AtomicUsize,
    pub(super) background: AtomicUsize,
    pub(super) writes: WriteBarrier,
    /// Becomes true on `close`: every operation in flight settles at once.
    pub(super) closing: watch::Sender<bool>,
    /// Writes and invalidations waiting for the other processes' acknowledgements.
    pub(super) acks: Arc<AckBook>,
    /// Where acknowledgements of other processes' messages are sent (set once L2 exists).
    pub(super) acker: std::sync::OnceLock<std::sync::Weak<L2>>,
    /// Whether the last acknowledged write timed out (see [`SHORT_ACK_WAIT`]).
    pub(super) acks_missing: AtomicBool,
    /// The tag markers this process knows (forgotten on every invalidation of the tag).
    pub(super) tag_versions: TagVersions,
    /// Program order of the writes and deletes of each key.
    pub(super) key_order: KeyOrder,
}

/// How long a write waits for acknowledgements after the previous one timed out, until one gets
/// all of them again. A process that stopped for good while Redis still holds its connection
/// open (a vanished host, until Redis' TCP keepalive drops it) then costs each write this, not
/// `bus.ackTimeout`; a process that was only slow acknowledges again and restores the full wait.
pub const SHORT_ACK_WAIT: Duration = Duration::from_millis(5);

impl BusHandler for Shared {
    fn on_event(&self, event: BusEvent) {
        Metrics::inc(&self.metrics.bus_received);
        match event {
            BusEvent::KeyChanged(key, write_id) => {
                {
                    let _coherent = self.coherence.lock();
                    self.log.key_written(&key, write_id);
                    if let Some(l1) = &self.l1 {
                        // a copy of exactly this write (read from Redis after it) is current
                        l1.remove_unless_write(&key, write_id);
                    }
                }
                self.waiters.wake(&key);
            }
            BusEvent::KeyDeleted(key) => {
                self.settled_key(&key, None);
                self.waiters.wake(&key);
            }
            BusEvent::TagInvalidated(tag) => self.settled_tag(&tag),
            BusEvent::LockReleased(key) => self.waiters.wake(&key),
            BusEvent::AllInvalidated => {
                self.settled_all();
                self.waiters.wake_all();
            }
        }
    }

    fn on_malformed(&self) {
        Metrics::inc(&self.metrics.bus_malformed);
    }

    fn on_ack_request(&self, channel: &str, from: &str, seq: u64) {
        // on_event has applied the message to L1: confirm it (without holding up the bus)
        let Some(l2) = self.l2() else {
            return;
        };
        Metrics::inc(&self.metrics.bus_acks_sent);
        let from = from.to_string();
        let channel = channel.to_string();
        // a lost acknowledgement costs the sender its bound (bus.ackTimeout), nothing more
        tokio::spawn(async move {
            let _ = l2.ack(&channel, &from, seq).await;
        });
    }

    fn on_ack(&self, seq: u64) {
        self.acks.ack(seq);
    }

    fn on_clock(&self, clock: u64) {
        if let Some(l2) = self.l2() {
            l2.learn_clock(clock);
        }
    }

    fn on_subscribed(&self, resubscribed: bool) {
        if resubscribed {
            // messages may have been missed while disconnected: nothing in L1 can be trusted
            Metrics::inc(&self.metrics.bus_resubscriptions);
            if let Some(l2) = self.l2() {
                l2.forget_clock();
            }
            self.settled_all();
            self.waiters.wake_all();
        }
    }
}

impl Shared {
    /// The Redis layer, while the cache holds it (the bus handler keeps no strong reference).
    fn l2(&self) -> Option<std::sync::Arc<crate::l2::L2>> {
        self.acker.get().and_then(|w| w.upgrade())
    }

    /// Queues several completions with at most one wake-up of the JS thread.
    pub(super) fn complete_many(&self, done: Vec<Completion>) {
        if done.is_empty() {
            return;
        }
        let n = done.len();
        let was_empty = {
            let mut q = self.queue.lock();
            let was_empty = q.is_empty();
            q.extend(done);
            was_empty
        };
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
        if was_empty {
            (self.notify)();
        }
    }

    pub(super) fn complete(&self, id: u32, outcome: Outcome) {
        let was_empty = {
            let mut q = self.queue.lock();
            let was_empty = q.is_empty();
            q.push(Completion { id, outcome });
            was_empty
        };
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if was_empty {
            (self.notify)();
        }
    }

    /// A write or delete of `key` was applied by Redis (or failed), or another process
    /// announced a delete: reads that started before now are stale for it, and whatever such a
    /// read put in L1 meanwhile goes, except
    /// a copy of the write itself (`keep`: its write id; known by id, not by slot, since a
    /// racing read's copy may have been given the slot the write's entry had).
    pub(super) fn settled_key(&self, key: &str, keep: Option<u64>) {
        let _coherent = self.coherence.lock();
        self.log.key(key);
        if let Some(l1) = &self.l1 {
            match keep {
                Some(write_id) => l1.remove_unless_write(key, write_id),
                None => {
                    l1.remove(key);
                }
            }
        }
    }

    /// Applies an invalidation to the log and L1 (when issued, and again once Redis applied it).
    pub(super) fn settled(&self, inv: &Replay) {
        match inv {
            Replay::Del { key, .. } | Replay::Expire { key, .. } => self.settled_key(key, None),
            Replay::Tag { tag, .. } | Replay::TagExpire { tag, .. } => self.settled_tag(tag),
            Replay::All { .. } => self.settled_all(),
        }
    }

    /// An invalidation of `tag` (local or announced): reads that started before now are stale
    /// for it, and every L1 entry carrying it goes.
    pub(super) fn settled_tag(&self, tag: &str) {
        let _coherent = self.coherence.lock();
        self.log.tag(tag);
        self.tag_versions.forget(tag);
        if let Some(l1) = &self.l1 {
            l1.invalidate_tag(tag);
        }
    }

    /// Nothing in L1 can be trusted (bus messages may have been missed, or the cache closes):
    /// every read that started before now is stale, and L1 is emptied.
    pub(super) fn settled_all(&self) {
        let _coherent = self.coherence.lock();
        self.log.all();
        self.tag_versions.clear();
        if let Some(l1) = &self.l1 {
            l1.clear();
        }
    }

    /// Waits (within `bound`, or [`SHORT_ACK_WAIT`] while acknowledgements are missing) until
    /// every subscriber that received a message confirmed it.
    pub(super) async fn await_acks(&self, acks: AckWait, receivers: u64, bound: Duration) {
        let bound = if self.acks_missing.load(Ordering::Relaxed) {
            bound.min(SHORT_ACK_WAIT)
        } else {
            bound
        };
        let all = acks.all(receivers, bound).await;
        self.acks_missing.store(!all, Ordering::Relaxed);
        if !all {
            Metrics::inc(&self.metrics.bus_ack_timeouts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Cache, Fill};
    use crate::config::{Config, Options};
    use std::sync::Barrier;

    fn l1_only() -> Cache {
        let config = Config::from_options(Options::default()).unwrap();
        Cache::new(config, crate::runtime::shared(), Box::new(|| {})).unwrap()
    }

    /// A Redis read that began before an invalidation is settled may be filled into L1 on the
    /// JS thread while the invalidation is recorded and applied to L1 on the I/O thread. In
    /// every interleaving the copy must be gone once both are done (the soak test once saw one
    /// survive: the fill checked the log, the invalidation recorded itself and removed nothing,
    /// then the fill inserted).
    #[test]
    fn a_fill_racing_with_an_invalidation_never_outlives_it() {
        let cache = Arc::new(l1_only());
        let mut survived = 0;
        for round in 0..5_000 {
            let start = cache.shared.log.begin();
            let go = Arc::new(Barrier::new(2));
            let filler = {
                let (cache, go) = (cache.clone(), go.clone());
                std::thread::spawn(move || {
                    go.wait();
                    cache.fill(Fill {
                        key: "k".into(),
                        write_id: 0,
                        ttl: Duration::from_secs(60),
                        tags: vec!["t".into()],
                        start,
                        soft: None,
                    });
                })
            };
            go.wait();
            if round % 2 == 0 {
                cache.shared.settled_key("k", None);
            } else {
                cache.shared.settled(&Replay::Tag {
                    tag: "t".into(),
                    notice: String::new(),
                });
            }
            filler.join().unwrap();
            if cache.l1_get("k").is_some() {
                survived += 1;
                cache.shared.settled_key("k", None);
            }
        }
        assert_eq!(survived, 0, "copies that outlived the invalidation");
    }
}
