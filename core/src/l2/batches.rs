//! The commands of concurrent misses on one server, batched. The lookups (`READ_OR_LOCK_MANY`)
//! and the loaders' values without tags (`STORE_LOADED_MANY`) that arrive in one turn of the I/O
//! thread go as one script call each, for up to [`MAX_BATCH`] keys. 64 concurrent misses then
//! cost a few round trips, script executions and socket writes instead of 64 of each: the
//! per-command cost of Redis and of the I/O thread, not the keys, dominated a miss (see the
//! miss scenario in `bench/`).
//!
//! Each request gets its own answer, as if it had run alone (the script runs the single-key
//! steps one key after the other, atomically). A failed batch fails each of its requests with
//! the same error (a lookup then loads without the lock, a value stays in this process's L1, as
//! for a lone command).

use std::future::Future;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::{L2Error, ReadOrLock, L2};
use crate::clock::now_us;

/// Keys in one script call at most.
pub const MAX_BATCH: usize = 64;

/// One cache-aside lookup waiting for its batch.
pub(super) struct Lookup {
    pub(super) key: String,
    pub(super) token: String,
    pub(super) ttl_ms: u64,
    /// the dead write marker, `*` or ''
    pub(super) discard: String,
    pub(super) answer: oneshot::Sender<Result<ReadOrLock, L2Error>>,
}

/// One loader's value (an entry without tags) waiting for its batch.
pub(super) struct Store {
    pub(super) key: String,
    pub(super) envelope: String,
    pub(super) ttl_ms: u64,
    pub(super) token: String,
    pub(super) notice: String,
    /// receivers of the announcement when stored, `None` when refused (the lock changed)
    pub(super) answer: oneshot::Sender<Result<Option<u64>, L2Error>>,
}

struct Queue<R> {
    waiting: Vec<R>,
    /// a sender task is running: it takes what waits
    sending: bool,
}

/// Requests of one kind waiting to be sent together.
pub(super) struct Batcher<R> {
    queue: Mutex<Queue<R>>,
}

impl<R> Default for Batcher<R> {
    fn default() -> Self {
        Batcher {
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                sending: false,
            }),
        }
    }
}

impl<R: Send + 'static> Batcher<R> {
    /// Queues `request`; starts a sender (running `send` on each batch) unless one runs.
    pub(super) fn submit<F, Fut>(&self, request: R, l2: &Weak<L2>, pick: fn(&L2) -> &Self, send: F)
    where
        F: Fn(Arc<L2>, Vec<R>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let start = {
            let mut q = self.queue.lock();
            q.waiting.push(request);
            !std::mem::replace(&mut q.sending, true)
        };
        if !start {
            return;
        }
        let Some(l2) = l2.upgrade() else {
            // dropping the queued requests answers them (their senders are dropped)
            let mut q = self.queue.lock();
            q.waiting.clear();
            q.sending = false;
            return;
        };
        tokio::spawn(send_batches(l2, pick, send));
    }

    /// The next batch, or `None` (and the sender stops) when none waits.
    fn take(&self) -> Option<Vec<R>> {
        let mut q = self.queue.lock();
        if q.waiting.is_empty() {
            q.sending = false;
            return None;
        }
        let n = q.waiting.len().min(MAX_BATCH);
        Some(q.waiting.drain(..n).collect())
    }
}

/// Sends what waits, in batches: the requests that arrived while the runtime ran other tasks
/// (one turn) go together, each batch on its own task (pipelined on the connection, so a batch
/// never waits for the previous one's answer). Stops when none waits; each round takes at
/// least one request, so it ends when they stop arriving.
async fn send_batches<R, F, Fut>(l2: Arc<L2>, pick: fn(&L2) -> &Batcher<R>, send: F)
where
    R: Send + 'static,
    F: Fn(Arc<L2>, Vec<R>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        // requests spawned in the same turn as the first one join its batch
        tokio::task::yield_now().await;
        let Some(batch) = pick(&l2).take() else {
            return;
        };
        tokio::spawn(send(l2.clone(), batch));
    }
}

/// One `READ_OR_LOCK_MANY` call for `batch`; answers each lookup.
pub(super) async fn send_lookups(l2: Arc<L2>, batch: Vec<Lookup>) {
    let result = async {
        let mut c = l2.conn().await?;
        let mut inv = l2.read_or_lock_many.key(l2.keys.clock());
        for r in &batch {
            inv.key(l2.keys.entry(&r.key)).key(l2.keys.lock(&r.key));
        }
        inv.arg(now_us());
        for r in &batch {
            inv.arg(&r.token).arg(r.ttl_ms).arg(&r.discard);
        }
        let rows: Vec<Vec<redis::Value>> = l2.bounded(inv.invoke_async(&mut c)).await?;
        check_rows(rows, batch.len())
    }
    .await;
    match result {
        Ok(rows) => {
            for (r, row) in batch.into_iter().zip(rows) {
                let _ = r.answer.send(l2.read_or_lock_reply(&row));
            }
        }
        Err(e) => {
            for r in batch {
                let _ = r.answer.send(Err(e.clone()));
            }
        }
    }
}

/// One `STORE_LOADED_MANY` call for `batch`; answers each store.
pub(super) async fn send_stores(l2: Arc<L2>, batch: Vec<Store>) {
    let result = async {
        let mut c = l2.conn().await?;
        let channel = l2.channel_of(&batch[0].key).to_string();
        let mut inv = l2.store_loaded_many.prepare_invoke();
        for r in &batch {
            inv.key(l2.keys.entry(&r.key)).key(l2.keys.lock(&r.key));
        }
        inv.arg(channel);
        for r in &batch {
            inv.arg(&r.envelope)
                .arg(r.ttl_ms)
                .arg(&r.token)
                .arg(&r.notice);
        }
        let rows: Vec<(u64, u64)> = l2.bounded(inv.invoke_async(&mut c)).await?;
        check_rows(rows, batch.len())
    }
    .await;
    match result {
        Ok(rows) => {
            for (r, (stored, receivers)) in batch.into_iter().zip(rows) {
                let _ = r.answer.send(Ok((stored == 1).then_some(receivers)));
            }
        }
        Err(e) => {
            for r in batch {
                let _ = r.answer.send(Err(e.clone()));
            }
        }
    }
}

/// One reply row per request, or an error.
fn check_rows<T>(rows: Vec<T>, wanted: usize) -> Result<Vec<T>, L2Error> {
    if rows.len() == wanted {
        return Ok(rows);
    }
    Err(L2Error::Invalid(format!(
        "a batch of {wanted} answered {} rows",
        rows.len()
    )))
}

/// Waits for a batched request's answer (the sender answers every request it takes).
pub(super) async fn answer<T>(rx: oneshot::Receiver<Result<T, L2Error>>) -> Result<T, L2Error> {
    rx.await
        .unwrap_or_else(|_| Err(L2Error::Invalid("the batch was dropped".into())))
}
