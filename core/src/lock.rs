//! Stampede protection across processes: lock tokens, the locks this process holds, and the
//! callers waiting for another process's loader.
//!
//! A cache-aside miss runs one script ([`crate::l2::L2::read_or_lock`]): it returns the value,
//! or takes `{<prefix>}:l:<key>` with `SET NX PX lock.ttl` and a unique token, or reports the
//! lock busy. The owner loads, writes the value (which announces it on the bus) and releases
//! the lock with a compare-and-delete script, so it can only ever delete its own lock. While
//! the loader runs, the lock is extended every `lock.ttl / 3`, so a loader slower than
//! `lock.ttl` never lets a second process load at the same time; extension stops when the lock
//! is released, lost, or after `loaderTimeout + lock.ttl` at most.
//!
//! A caller that finds the lock busy waits for a bus message about the key (or polls every
//! [`POLL`] if messages are lost), re-running the script each time: it gets the value, or the
//! lock if the owner gave up. After `lock.wait` it stops waiting and loads without the lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// How often a waiter re-checks Redis when no message arrives.
pub const POLL: Duration = Duration::from_millis(100);

/// 128 random bits from the operating system's cryptographic source, as hex.
pub fn random_token() -> String {
    use std::fmt::Write;
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    let mut hex = String::with_capacity(32);
    for b in bytes {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// A lock token no other lock of any process holds: this process's 128-bit random prefix and
/// a counter. Every cache-aside miss needs one (the script takes the lock in the same round
/// trip), so it costs neither a system call nor more than one allocation.
pub fn lock_token() -> String {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}{n:x}", PREFIX.get_or_init(random_token))
}

/// 64 random bits from the operating system's cryptographic source.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    u64::from_le_bytes(bytes)
}

/// Callers of this process waiting for another process's loader, by key.
#[derive(Default)]
pub struct Waiters {
    map: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Waiters {
    /// The wake-up signal of `key`; keep it while waiting and [`Waiters::done`] it after.
    pub fn register(&self, key: &str) -> Arc<Notify> {
        self.map.lock().entry(key.to_string()).or_default().clone()
    }

    /// Wakes every waiter of `key`.
    pub fn wake(&self, key: &str) {
        if let Some(n) = self.map.lock().get(key) {
            n.notify_waiters();
        }
    }

    /// Wakes every waiter (for example after the bus lost messages).
    pub fn wake_all(&self) {
        for n in self.map.lock().values() {
            n.notify_waiters();
        }
    }

    /// Forgets `key`'s signal once its last waiter is done.
    pub fn done(&self, key: &str, signal: Arc<Notify>) {
        let mut map = self.map.lock();
        drop(signal);
        if map.get(key).is_some_and(|n| Arc::strong_count(n) == 1) {
            map.remove(key);
        }
    }

    /// Keys with waiters.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A lock this process holds.
pub struct HeldLock {
    /// The key it protects.
    pub key: String,
    /// Our token.
    pub token: String,
    /// The task extending it.
    pub extender: AbortHandle,
}

/// Locks held by this process, by the id handed to the JS side.
#[derive(Default)]
pub struct HeldLocks {
    next: Mutex<u32>,
    map: Mutex<HashMap<u32, HeldLock>>,
}

impl HeldLocks {
    /// Reserves an id.
    pub fn next_id(&self) -> u32 {
        let mut n = self.next.lock();
        *n = n.wrapping_add(1) & 0x3fff_ffff;
        *n
    }

    /// Records a held lock.
    pub fn insert(&self, id: u32, lock: HeldLock) {
        self.map.lock().insert(id, lock);
    }

    /// Takes a held lock (to release it), stopping its extension.
    pub fn take(&self, id: u32) -> Option<HeldLock> {
        let lock = self.map.lock().remove(&id)?;
        lock.extender.abort();
        Some(lock)
    }

    /// Takes every held lock.
    pub fn take_all(&self) -> Vec<HeldLock> {
        let all: Vec<HeldLock> = self.map.lock().drain().map(|(_, l)| l).collect();
        for l in &all {
            l.extender.abort();
        }
        all
    }

    /// How many locks are held.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hex() {
        let a = random_token();
        let b = random_token();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        let (c, d) = (lock_token(), lock_token());
        assert!(c.len() > 32 && c.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(c[..32], d[..32], "one prefix per process");
        assert_ne!(c, d);
    }

    #[tokio::test]
    async fn waiters_wake_and_are_forgotten() {
        let w = Arc::new(Waiters::default());
        let signal = w.register("k");
        {
            let notified = signal.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            w.wake("k");
            tokio::time::timeout(Duration::from_secs(1), notified)
                .await
                .expect("woken");
        }
        w.done("k", signal);
        assert!(w.is_empty());
    }
}
