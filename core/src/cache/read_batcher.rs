//! The read batcher: plain Redis reads ([`Cache::get_l2_many`](super::Cache::get_l2_many))
//! queue here on the JS thread, and one tokio task per cache sends them as `MGET` batches, each
//! batch in a task of its own.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::completion::{read_envelope, Completion, Outcome};
use super::shared::Shared;
use super::tag_check::judge;
use crate::bus::Bus;
use crate::l2::L2;
use crate::metrics::{LatencyOutcome, Metrics};

/// A plain read waiting for the read batcher.
pub(super) struct PendingRead {
    pub(super) id: u32,
    pub(super) key: String,
    pub(super) began: std::time::Instant,
}

/// Reads of one cache waiting to be sent, and the wake-up of the batcher that sends them.
#[derive(Default)]
pub(super) struct ReadQueue {
    queue: Mutex<Vec<PendingRead>>,
    wake: tokio::sync::Notify,
}

impl ReadQueue {
    pub(super) fn push_many(&self, reads: impl IntoIterator<Item = PendingRead>) {
        let was_empty = {
            let mut q = self.queue.lock();
            let was_empty = q.is_empty();
            q.extend(reads);
            was_empty && !q.is_empty()
        };
        if was_empty {
            self.wake.notify_one();
        }
    }

    fn take(&self, max: usize) -> Vec<PendingRead> {
        let mut q = self.queue.lock();
        let n = q.len().min(max);
        q.drain(..n).collect()
    }
}

/// The most keys in one `MGET`.
const MAX_BATCH: usize = 256;
/// The most `MGET`s in flight at once per cache.
const MAX_BATCHES_IN_FLIGHT: usize = 4;

/// Sends queued reads as `MGET` batches: every read that arrives while a batch is out joins the
/// next one, so 64 concurrent `get`s cost a few round trips instead of 64 commands, timers and
/// tasks (the auto-pipelining of ioredis and node-redis, done on the I/O thread).
pub(super) async fn run_read_batcher(
    shared: Arc<Shared>,
    l2: Arc<L2>,
    reads: Arc<ReadQueue>,
    bus: Option<Arc<Bus>>,
    l1_ttl: Option<Duration>,
) {
    let mut closing = shared.closing.subscribe();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_BATCHES_IN_FLIGHT));
    loop {
        tokio::select! {
            _ = reads.wake.notified() => {}
            _ = closing.wait_for(|closed| *closed) => break,
        }
        if let Some(bus) = &bus {
            bus.first_attempt_done(l2.bound()).await;
        }
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let batch = reads.take(MAX_BATCH);
            if batch.is_empty() {
                break;
            }
            let (shared, l2, mut closing) = (shared.clone(), l2.clone(), closing.clone());
            let bus = bus.clone();
            tokio::spawn(async move {
                let keys: Vec<String> = batch.iter().map(|r| r.key.clone()).collect();
                let start = shared.log.begin();
                let answer = tokio::select! {
                    answer = l2.mget(&keys) => Some(answer),
                    _ = closing.wait_for(|closed| *closed) => None,
                };
                let m = &shared.metrics;
                let values = match answer {
                    Some(Ok(values)) if values.len() == batch.len() => values,
                    // failed (counted by L2) or closing: every read misses
                    _ => vec![None; batch.len()],
                };
                let mut hits: Vec<Option<super::Hit>> = Vec::with_capacity(batch.len());
                for (read, value) in batch.iter().zip(values) {
                    hits.push(value.and_then(|bytes| {
                        let hit = read_envelope(bytes, &read.key, start, l1_ttl);
                        if hit.is_none() {
                            Metrics::inc(&m.redis_corrupt_values);
                        }
                        hit
                    }));
                }
                // entries with tags are valid only under their tags' markers
                let tagged: Vec<(usize, u64, &[String])> = hits
                    .iter()
                    .enumerate()
                    .filter_map(|(i, h)| {
                        h.as_ref()
                            .filter(|h| !h.tags.is_empty())
                            .map(|h| (i, h.born, h.tags.as_slice()))
                    })
                    .collect();
                if !tagged.is_empty() {
                    let trusted = bus.as_ref().is_some_and(|b| b.is_connected());
                    let entries: Vec<(u64, &[String])> =
                        tagged.iter().map(|&(_, b, t)| (b, t)).collect();
                    let verdicts = tokio::select! {
                        v = judge(&shared, &l2, trusted, &entries) => v,
                        _ = closing.wait_for(|closed| *closed) => vec![false; entries.len()],
                    };
                    let dead: Vec<usize> = tagged
                        .iter()
                        .zip(verdicts)
                        .filter(|(_, valid)| !valid)
                        .map(|(&(i, _, _), _)| i)
                        .collect();
                    for i in dead {
                        hits[i] = None;
                    }
                }
                let mut done = Vec::with_capacity(batch.len());
                // a plain read serves fresh values only: a stale one is kept for its grace, as
                // the fail-safe copy of a lookup with a loader
                let hits = hits.into_iter().map(|h| h.filter(|h| !h.stale));
                for (read, hit) in batch.into_iter().zip(hits) {
                    let outcome = match hit {
                        Some(hit) => {
                            Metrics::inc(&m.l2_hits);
                            Outcome::Hit(hit)
                        }
                        None => {
                            Metrics::inc(&m.l2_misses);
                            Outcome::Miss
                        }
                    };
                    let label = match outcome {
                        Outcome::Hit(_) => LatencyOutcome::L2Hit,
                        _ => LatencyOutcome::Miss,
                    };
                    shared.latencies.observe(label, read.began.elapsed());
                    done.push(Completion {
                        id: read.id,
                        outcome,
                    });
                }
                shared.complete_many(done);
                drop(permit);
            });
        }
    }
    // closed: settle whatever still waits as a miss
    let left = reads.take(usize::MAX);
    shared.complete_many(
        left.into_iter()
            .map(|r| Completion {
                id: r.id,
                outcome: Outcome::Miss,
            })
            .collect(),
    );
}
