//! Locking reads: a cache-aside lookup ([`Cache::read_or_lock`](super::Cache::read_or_lock))
//! that takes the key's stampede lock on a miss, or waits for the process holding it.
//!
//! Each read runs as one tokio task; a lock it takes is kept alive by a second task
//! (`extend_while_held`) until the loader's value is written or the lock released.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;

use super::completion::{read_envelope, Hit, LoadContext, Outcome};
use super::shared::Shared;
use super::tag_check::judge;

/// Unusable entries (invalidated by a tag, unreadable) one lookup deletes at most, or stale
/// entries it finds replaced, before it loads without the lock.
const MAX_DISCARDS: usize = 3;
use crate::bus::Bus;
use crate::l2::{Discard, ReadOrLock, L2};
use crate::lock::{lock_token, HeldLock, HeldLocks, POLL};
use crate::metrics::{LatencyOutcome, Metrics};

/// One cache-aside read with cross-process stampede protection (see [`crate::lock`]).
pub(super) struct LockingRead {
    pub(super) shared: Arc<Shared>,
    pub(super) locks: Arc<HeldLocks>,
    pub(super) rt: Handle,
    pub(super) l2: Arc<L2>,
    pub(super) bus: Option<Arc<Bus>>,
    pub(super) key: String,
    pub(super) l1_ttl: Option<Duration>,
    pub(super) lock_ttl: Duration,
    pub(super) wait: Duration,
    pub(super) max_hold: Duration,
    /// An eager refresh of an entry this process holds: a fresh entry due for a refresh is
    /// refreshed too, and when another process holds the lock the refresh is left to it (no
    /// load without the lock: the entry is still there).
    pub(super) refresh: bool,
    /// The caller answers with a stale value rather than wait (`softTimeout`): a stale entry
    /// whose lock another process holds completes at once as [`Outcome::Stale`].
    pub(super) early_stale: bool,
}

impl LockingRead {
    pub(super) async fn run(self) -> Outcome {
        let began = std::time::Instant::now();
        if let Some(bus) = &self.bus {
            bus.first_attempt_done(self.l2.bound()).await;
        }
        let signal = self.shared.waiters.register(&self.key);
        let outcome = self.attempts(&signal).await;
        self.shared.waiters.done(&self.key, signal);
        if matches!(outcome, Outcome::Hit(_)) {
            // a load is timed by its caller, from the start of the lookup to the value
            self.shared
                .latencies
                .observe(LatencyOutcome::L2Hit, began.elapsed());
        }
        outcome
    }

    async fn attempts(&self, signal: &tokio::sync::Notify) -> Outcome {
        let m = &self.shared.metrics;
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut waited = false;
        // an entry found unusable, deleted by the next round (at most MAX_DISCARDS rounds)
        let mut discard = None;
        let mut discards = 0;
        // bounded: each round waits at least until a message or POLL, and stops at `deadline`
        loop {
            // listen before asking, so an announcement during the round trip is not missed
            let notified = signal.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let token = lock_token();
            let start = self.shared.log.begin();
            let trusted = self.bus.as_ref().is_some_and(|b| b.is_connected());
            let answer = self
                .l2
                .read_or_lock(&self.key, &token, self.lock_ttl, discard.take(), trusted)
                .await;
            if !waited && discards == 0 && !matches!(answer, Ok(ReadOrLock::Value(_))) {
                Metrics::inc(&m.l2_misses);
            }
            match answer {
                Ok(ReadOrLock::Value(bytes)) => {
                    let Some(hit) = read_envelope(bytes, &self.key, start, self.l1_ttl) else {
                        // unreadable: a miss; the next round deletes it and takes the lock
                        Metrics::inc(&m.redis_corrupt_values);
                        Metrics::inc(&m.l2_misses);
                        discard = Some(Discard::Unreadable);
                        discards += 1;
                        if discards > MAX_DISCARDS {
                            return self.without_lock();
                        }
                        continue;
                    };
                    let mut hit = hit;
                    if !hit.tags.is_empty() {
                        let trusted = self.bus.as_ref().is_some_and(|b| b.is_connected());
                        let valid =
                            judge(&self.shared, &self.l2, trusted, &[(hit.born, &hit.tags)]).await;
                        if !valid[0] && self.expired_by_tag(&hit).await {
                            // a tag invalidated in expire mode: stale, the fail-safe copy
                            hit.make_stale();
                        } else if !valid[0] {
                            // a tag was invalidated after it was written: a miss
                            if !waited && discards == 0 {
                                Metrics::inc(&m.l2_misses);
                            }
                            discard = Some(Discard::Write(hit.write_id));
                            discards += 1;
                            if discards > MAX_DISCARDS {
                                return self.without_lock();
                            }
                            continue;
                        }
                    }
                    if !(hit.stale || (self.refresh && hit.refresh_due)) {
                        // a lookup that waited was counted as a miss already
                        Metrics::inc(if waited || discards > 0 {
                            &m.lock_wait_hits
                        } else {
                            &m.l2_hits
                        });
                        return Outcome::Hit(hit);
                    }
                    // stale (kept for its grace) or due for an eager refresh: load under the
                    // lock, with the entry as the fail-safe copy
                    if !waited && discards == 0 && !self.refresh {
                        Metrics::inc(&m.l2_misses);
                    }
                    let trusted = self.bus.as_ref().is_some_and(|b| b.is_connected());
                    let write_id = hit.write_id;
                    match self
                        .l2
                        .take_lock(&self.key, &token, self.lock_ttl, write_id, trusted)
                        .await
                    {
                        Ok(ReadOrLock::Acquired(clock)) => {
                            return self.acquired(token, clock, Some(hit));
                        }
                        // replaced meanwhile (a refresh just ended): read it in the next round
                        Ok(ReadOrLock::Value(_)) => {
                            discards += 1;
                            if discards > MAX_DISCARDS {
                                return self.without_lock();
                            }
                            continue;
                        }
                        Ok(_) if self.early_stale && !self.refresh => {
                            if !waited {
                                Metrics::inc(&m.lock_waits);
                            }
                            return Outcome::Stale(hit);
                        }
                        Ok(_) => {
                            if let Some(out) = self.busy(&mut waited, deadline, Some(hit)) {
                                return out;
                            }
                            let now = tokio::time::Instant::now();
                            let _ =
                                tokio::time::timeout((deadline - now).min(POLL), notified).await;
                        }
                        // counted by L2: load without the lock, the stale value at hand
                        Err(_) => return Outcome::Load(LoadContext::default(), Some(hit)),
                    }
                }
                Ok(ReadOrLock::Acquired(clock)) => return self.acquired(token, clock, None),
                Ok(ReadOrLock::Busy(_)) => {
                    if let Some(out) = self.busy(&mut waited, deadline, None) {
                        return out;
                    }
                    let now = tokio::time::Instant::now();
                    let _ = tokio::time::timeout((deadline - now).min(POLL), notified).await;
                }
                // counted by L2: a miss; load without the lock
                Err(_) => return self.without_lock(),
            }
        }
    }

    /// Whether an entry a tag's marker made invalid is only stale: it has a grace left, and
    /// each tag's marker exists and is either not newer than its birth or was raised in expire
    /// mode only (its deletion marker exists and is not newer than the birth). Unknown (Redis
    /// failed): dead.
    async fn expired_by_tag(&self, hit: &Hit) -> bool {
        if hit.grace_ms == 0 || hit.retain_until_ms <= crate::clock::now_ms() {
            return false;
        }
        let (markers, deletions) = futures_util::future::join(
            self.l2.markers(&hit.tags),
            self.l2.deletion_markers(&hit.tags),
        )
        .await;
        let (Ok(markers), Ok(deletions)) = (markers, deletions) else {
            return false;
        };
        markers.iter().zip(&deletions).all(|(m, d)| match m {
            Some(m) if *m <= hit.born => true,
            Some(_) => d.is_some_and(|d| d <= hit.born),
            None => false,
        })
    }

    /// A load without the lock (Redis failed, or kept giving unusable entries): its value
    /// stays in this process's L1 (an eager refresh too: with Redis down, each process
    /// refreshes its own copy).
    fn without_lock(&self) -> Outcome {
        Outcome::Load(LoadContext::default(), None)
    }

    /// We hold the lock: load, keeping it alive meanwhile.
    fn acquired(&self, token: String, clock: u64, stale: Option<Hit>) -> Outcome {
        Metrics::inc(&self.shared.metrics.lock_acquired);
        let id = self.locks.next_id();
        let extend = extend_while_held(
            self.l2.clone(),
            self.key.clone(),
            token.clone(),
            self.lock_ttl,
            self.max_hold,
        );
        let extender = self.rt.spawn(extend).abort_handle();
        let key = self.key.clone();
        self.locks.insert(
            id,
            HeldLock {
                key,
                token,
                extender,
            },
        );
        let load = LoadContext {
            lock_id: Some(id),
            since: None,
            token: Some(clock),
        };
        Outcome::Load(load, stale)
    }

    /// Another process holds the lock: `None` to wait for its value (a message or the next
    /// poll), or, once `lock.wait` ran out, the outcome: a load without the lock (with the
    /// stale value if there is one), or for a refresh, nothing.
    fn busy(
        &self,
        waited: &mut bool,
        deadline: tokio::time::Instant,
        stale: Option<Hit>,
    ) -> Option<Outcome> {
        let m = &self.shared.metrics;
        if !*waited {
            *waited = true;
            Metrics::inc(&m.lock_waits);
        }
        if tokio::time::Instant::now() < deadline {
            return None;
        }
        Metrics::inc(&m.lock_wait_timeouts);
        if self.refresh {
            return Some(Outcome::Miss);
        }
        // the load's birth: the clock is unknown here, so Redis will not take the value
        Some(Outcome::Load(LoadContext::default(), stale))
    }
}

/// Keeps our lock alive while its loader runs: every `ttl / 3`, for at most `max_hold`.
async fn extend_while_held(
    l2: Arc<L2>,
    key: String,
    token: String,
    ttl: Duration,
    max_hold: Duration,
) {
    let until = tokio::time::Instant::now() + max_hold;
    let every = (ttl / 3).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(every).await;
        if tokio::time::Instant::now() >= until {
            return;
        }
        match l2.extend_lock(&key, &token, ttl).await {
            Ok(true) => {}
            Ok(false) => return, // lost (expired while Redis was unreachable): stop
            Err(_) => {}         // transient: try again next period
        }
    }
}
