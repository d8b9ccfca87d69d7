//! The write path of the [`Cache`] facade: `set`, `del`, `invalidateTag` and the release of
//! stampede locks, with the bus notices (acknowledged or not) they carry.
//!
//! Each method does its L1 half at once on the JS thread, then spawns its Redis half on the
//! tokio runtime.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::shared::Shared;
use super::{Cache, Freshness, LoadContext, Outcome, Started};
use crate::acks::AckWait;
use crate::bus::{self, BusEvent};
use crate::clock::now_ms;
use crate::codec;
use crate::l2::{L2Error, LoadedWrite, Replay, L2};
use crate::lock::HeldLock;
use crate::metrics::Metrics;

impl Cache {
    fn notice(&self, event: BusEvent) -> String {
        Metrics::inc(&self.shared.metrics.bus_sent);
        crate::bus::encode(&self.instance, &event)
    }

    /// The notice of a write or invalidation, asking the other processes to acknowledge it when
    /// `bus.ackTimeout` is on and the bus is subscribed (acknowledgements arrive through it).
    fn acked_notice(&self, event: BusEvent) -> (String, Option<AckWait>) {
        let wanted = self
            .config
            .l2
            .as_ref()
            .is_some_and(|c| !c.ack_timeout.is_zero())
            && self.bus().is_some_and(|b| b.is_connected());
        if !wanted {
            return (self.notice(event), None);
        }
        let wait = self.shared.acks.open();
        Metrics::inc(&self.shared.metrics.bus_sent);
        let notice = bus::encode_acked(&self.instance, wait.seq(), &event);
        (notice, Some(wait))
    }

    /// Releases a stampede lock taken by [`Cache::read_or_lock`] without writing a value (the
    /// loader failed or returned nothing). Waiting processes are woken to try again.
    pub fn unlock(&self, lock_id: u32) {
        if let Some(lock) = self.locks.take(lock_id) {
            self.release(lock);
        }
    }

    /// Releases a held lock in the background, waking the waiters of other processes (by its
    /// announcement) and of this one (a process ignores its own announcements).
    fn release(&self, lock: HeldLock) {
        let Some(l2) = self.l2() else {
            return;
        };
        let notice = self.notice(BusEvent::LockReleased(lock.key.clone()));
        let shared = self.shared.clone();
        self.spawn_background(async move {
            // a failure is counted by L2; the lock then expires by its TTL
            let _ = l2.release_lock(&lock.key, &lock.token, &notice).await;
            shared.waiters.wake(&lock.key);
        });
    }

    /// Writes a value (its JSON text) to L1 at once and starts the Redis write (which announces
    /// the change on the bus). `fresh.ttl` overrides `l1.ttl` and `l2.ttl`; with `fresh.grace`
    /// the entry is kept that much longer (L1 and Redis) as the fail-safe copy. For a loader's value,
    /// `load` carries its stampede lock (released once Redis has the value) and the epoch at
    /// which the lookup began: if the key or one of `tags` was invalidated since, the value may
    /// predate the change and is not cached at all (`loads_discarded`). A loader's value reaches
    /// Redis only under its stampede lock (see [`crate::l2`]): one loaded without it (Redis failed
    /// at the lookup, or `lock.wait` ran out) stays in this process's L1. Returns the L1 slot to
    /// fill now, if the value went into L1.
    pub fn set(
        &self,
        id: u32,
        key: &str,
        value_json: String,
        fresh: Freshness,
        tags: Vec<String>,
        load: LoadContext,
    ) -> (Option<u32>, Started) {
        let ttl = fresh.ttl;
        let lock = load.lock_id.and_then(|id| self.locks.take(id));
        let is_load = load.since.is_some() || lock.is_some();
        let coherent = self.shared.coherence.lock();
        if let Some(epoch) = load.since {
            if self
                .shared
                .log
                .is_stale(self.shared.log.since(epoch), key, &tags, 0)
            {
                drop(coherent);
                Metrics::inc(&self.shared.metrics.loads_discarded);
                if let Some(lock) = lock {
                    self.release(lock);
                }
                return (None, Started::Finished);
            }
        }
        Metrics::inc(&self.shared.metrics.sets);
        self.shared.log.key(key);
        let write_id = self.write_ids.fetch_add(1, Ordering::Relaxed);
        let slot = match (&self.shared.l1, &self.config.l1) {
            (Some(l1), Some(c)) => {
                // kept past its ttl for the grace: JS serves it as fresh only until the ttl
                let keep = ttl.unwrap_or(c.ttl) + fresh.grace;
                l1.insert_unbounded(key, keep, &tags, write_id)
            }
            _ => None,
        };
        drop(coherent);
        // evicting is no invalidation: it needs no coherence lock
        self.end_fills();
        let (Some(l2), Some(l2_config)) = (self.l2(), &self.config.l2) else {
            return (slot, Started::Finished);
        };
        // a load without the lock (or its clock) writes nothing to Redis: it cannot know that
        // no write or delete of the key happened while it loaded
        let loaded = match (&lock, load.token) {
            (Some(lock), Some(born)) => Some((born, lock.token.clone())),
            _ if is_load => {
                if let Some(lock) = lock {
                    self.release(lock);
                }
                return (slot, Started::Finished);
            }
            _ => None,
        };
        let l2_ttl = ttl.unwrap_or(l2_config.ttl);
        let ack_timeout = l2_config.ack_timeout;
        let shared = self.shared.clone();
        let event = BusEvent::KeyChanged(key.to_string(), write_id);
        // a caller's own write waits for the other processes to drop their copies; a loader's
        // value replaces nothing they may hold (its key was absent from Redis)
        let (notice, acks) = if is_load {
            (self.notice(event), None)
        } else {
            self.acked_notice(event)
        };
        let instance = self.instance.clone();
        let key = key.to_string();
        let seq = self.shared.writes.begin();
        let turn = self.shared.key_order.enter(&key);
        let write = async move {
            turn.wait(l2.bound()).await;
            let now = now_ms();
            let ttl_ms = l2_ttl.as_millis() as u64;
            let life = codec::Lifetime {
                expires_at_ms: now + ttl_ms,
                grace_ms: fresh.grace.as_millis() as u64,
                refresh_at_ms: fresh
                    .eager_refresh
                    .map(|x| now + (ttl_ms as f64 * x) as u64),
            };
            let l1_ttl_ms = ttl.map(|t| t.as_millis() as u64);
            let envelope = codec::encode(&value_json, life, l1_ttl_ms, write_id, &tags);
            let as_load = loaded.as_ref().map(|(born, token)| LoadedWrite {
                born: *born,
                lock_token: token,
            });
            let written = l2
                .set(
                    &key,
                    &envelope,
                    l2_ttl + fresh.grace,
                    &tags,
                    &notice,
                    as_load,
                )
                .await;
            shared.writes.end(seq);
            let mut outcome = Outcome::Done;
            let mut receivers = None;
            match written {
                Ok(Some(n)) => {
                    // a read that raced with this write may have seen the older value: it must
                    // not stay in L1 (see crate::invalidation)
                    shared.settled_key(&key, Some(write_id));
                    receivers = Some(n);
                    // an earlier write of the key that failed waits to be replayed as a delete:
                    // this one replaced that older value already
                    if !is_load {
                        l2.supersede_replay(&Replay::Del {
                            key: key.clone(),
                            notice: String::new(),
                        });
                    }
                }
                Ok(None) => {
                    // a write, delete or tag invalidation came after the lookup: the value may
                    // predate it, so it leaves L1 too
                    Metrics::inc(&shared.metrics.loads_discarded);
                    shared.settled_key(&key, None);
                }
                Err(e) => {
                    shared.settled_key(&key, Some(write_id));
                    if is_load {
                    } else {
                        // Redis may still hold an older value: it must go, now or once Redis is
                        // back (a loader's value replaced nothing: nothing to undo)
                        let inv = Replay::Del {
                            key: key.clone(),
                            notice: notice.clone(),
                        };
                        let (o, r) = settle_invalidation(&shared, &l2, &e, inv).await;
                        outcome = o;
                        receivers = r;
                    }
                }
            }
            shared.key_order.finish(turn);
            let stored = loaded.is_some() && receivers.is_some();
            if let Some(lock) = lock.filter(|_| !stored) {
                // not stored: the lock is still ours (stored, the script released it and the
                // announcement woke the waiters)
                let wake = bus::encode(&instance, &BusEvent::LockReleased(lock.key.clone()));
                let _ = l2.release_lock(&lock.key, &lock.token, &wake).await;
            }
            // this process's own lookups waiting for a lock on the key (a lookup begun after an
            // invalidation detached the one holding it) hear no announcement of ours: the key's
            // value or lock changed, so they ask Redis again now rather than at their next poll
            shared.waiters.wake(&key);
            if let (Some(acks), Some(receivers)) = (acks, receivers) {
                shared.await_acks(acks, receivers, ack_timeout).await;
            }
            outcome
        };
        self.spawn(id, write, Outcome::Done);
        (slot, Started::Pending)
    }

    /// Removes `key` from L1 at once and starts the Redis delete (announced on the bus).
    pub fn del(&self, id: u32, key: &str) -> Started {
        Metrics::inc(&self.shared.metrics.deletes);
        let (notice, acks) = self.acked_notice(BusEvent::KeyDeleted(key.to_string()));
        self.invalidate(
            id,
            Replay::Del {
                key: key.to_string(),
                notice,
            },
            acks,
        )
    }

    /// Marks `key` stale: removed from every process's L1 at once (like [`Cache::del`]), and in
    /// Redis kept only as the fail-safe copy when it has a grace (deleted otherwise), so the
    /// next read loads afresh. Kept for replay as a delete when Redis cannot take it.
    pub fn expire(&self, id: u32, key: &str) -> Started {
        Metrics::inc(&self.shared.metrics.expires);
        let (notice, acks) = self.acked_notice(BusEvent::KeyDeleted(key.to_string()));
        self.invalidate(
            id,
            Replay::Expire {
                key: key.to_string(),
                notice,
            },
            acks,
        )
    }

    /// Removes every entry tagged `tag` from L1 at once and starts the Redis invalidation
    /// (announced on the bus).
    ///
    /// `expire`: the entries become stale rather than dead: removed from every L1, and in
    /// Redis kept as the fail-safe copy within their grace (see `MARK_DELETION`).
    pub fn invalidate_tag(&self, id: u32, tag: &str, expire: bool) -> Started {
        Metrics::inc(&self.shared.metrics.tag_invalidations);
        let (notice, acks) = self.acked_notice(BusEvent::TagInvalidated(tag.to_string()));
        let tag = tag.to_string();
        let inv = if expire {
            Replay::TagExpire { tag, notice }
        } else {
            Replay::Tag { tag, notice }
        };
        self.invalidate(id, inv, acks)
    }

    /// Applies an invalidation to L1 at once, then to Redis once every write issued before it
    /// was answered (and, for a key, its earlier writes: program order); applies it to L1 again
    /// when Redis has (a read that raced with it may have put an older value back). Redis
    /// unreachable: kept for replay, completes. Redis refusing it: retried within the bound,
    /// then completes with [`Outcome::Refused`] (kept for replay when the refusal may pass).
    /// With `acks`, it completes once the other processes confirmed it (within
    /// `bus.ackTimeout`).
    fn invalidate(&self, id: u32, inv: Replay, acks: Option<AckWait>) -> Started {
        self.shared.settled(&inv);
        let (Some(l2), Some(l2_config)) = (self.l2(), &self.config.l2) else {
            return Started::Finished;
        };
        let ack_timeout = l2_config.ack_timeout;
        let shared = self.shared.clone();
        let upto = self.shared.writes.issued();
        let turn = match &inv {
            Replay::Del { key, .. } | Replay::Expire { key, .. } => {
                Some(self.shared.key_order.enter(key))
            }
            _ => None,
        };
        let task = async move {
            shared.writes.wait_for(upto, l2.bound()).await;
            if let Some(turn) = &turn {
                turn.wait(l2.bound()).await;
            }
            let (outcome, receivers) = match l2.apply(&inv).await {
                Ok(receivers) => {
                    shared.settled(&inv);
                    l2.supersede_replay(&inv);
                    (Outcome::Done, Some(receivers))
                }
                Err(e) => {
                    shared.settled(&inv);
                    settle_invalidation(&shared, &l2, &e, inv).await
                }
            };
            if let Some(turn) = turn {
                shared.key_order.finish(turn);
            }
            if let (Some(acks), Some(receivers)) = (acks, receivers) {
                shared.await_acks(acks, receivers, ack_timeout).await;
            }
            outcome
        };
        self.spawn(id, task, Outcome::Done);
        Started::Pending
    }
}

/// How many times a refused invalidation is tried within its bound at most.
const MAX_REFUSED_TRIES: usize = 200;

/// Finishes an invalidation whose first try failed with `first`: Redis unreachable, it is kept
/// for replay (the call completes: slower, never broken); Redis refusing it (`BUSY`, `OOM`,
/// `LOADING`, ...), it is tried again until `2 x` the command bound, then kept for replay and
/// the call completes with [`Outcome::Refused`]; a refusal that cannot pass by itself
/// (`NOPERM`, ...) completes with [`Outcome::Refused`] at once. Applied to this process's L1
/// when Redis applied or refused it; when Redis was unreachable, by the replay. Returns the
/// outcome and, when Redis applied it, the announcement's receivers.
pub(super) async fn settle_invalidation(
    shared: &Shared,
    l2: &L2,
    first: &L2Error,
    inv: Replay,
) -> (Outcome, Option<u64>) {
    let mut last = first.clone();
    if last.is_availability() {
        // Redis unreachable: kept for replay, which settles it in L1 once Redis has it (a
        // failed `set` keeps its own L1 copy until then)
        l2.queue_replay(inv);
        return (Outcome::Done, None);
    }
    if !last.is_transient_refusal() {
        shared.settled(&inv);
        return (refused(shared, &last), None);
    }
    {
        let deadline = tokio::time::Instant::now() + l2.bound() * 2;
        let mut pause = Duration::from_millis(5);
        // bounded: MAX_REFUSED_TRIES tries, and the deadline
        for _ in 0..MAX_REFUSED_TRIES {
            if tokio::time::Instant::now() + pause >= deadline {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
            match l2.apply(&inv).await {
                Ok(receivers) => {
                    shared.settled(&inv);
                    return (Outcome::Done, Some(receivers));
                }
                Err(e) => {
                    // a breaker opened meanwhile, or a connection lost: still refused for us
                    if !e.is_availability() {
                        last = e;
                    }
                    if !last.is_transient_refusal() {
                        break;
                    }
                }
            }
        }
    }
    shared.settled(&inv);
    if last.is_transient_refusal() {
        l2.queue_replay(inv);
    }
    (refused(shared, &last), None)
}

fn refused(shared: &Shared, e: &L2Error) -> Outcome {
    Metrics::inc(&shared.metrics.invalidations_refused);
    Outcome::Refused {
        code: e.code().to_string(),
        message: e.to_string(),
    }
}
