//! The Redis layer on a Redis Cluster: each operation in steps of one slot each.
//!
//! On one server a write, its tag markers, the invalidation clock and the bus announcement
//! change in one script. On a cluster those keys live on different shards, and a script may
//! touch one slot only, so an operation takes a few steps, ordered so that every promise of
//! the single-server design still holds:
//!
//! - **Lookup**: the entry and its lock share a slot (`READ_OR_LOCK_SLOT`). The load's birth is
//!   the highest invalidation clock value this process knows was handed out
//!   ([`L2::learn_clock`]): its own invalidations, the others' bus announcements (each carries
//!   its clock value) and, while the bus is not subscribed, a read of the clock. Any clock value
//!   handed out before the lookup is a correct birth: every invalidation with a smaller or
//!   equal value had already advanced the clock, after its source changed, so the loader reads
//!   the changed source; every later invalidation gets a larger value and kills the entry. A
//!   birth that lags (an announcement still on its way) only makes the entry die sooner. So
//!   the clock is not read on every miss (a hot spot on its shard), only when the bus is down.
//! - **Tagged write**: first each tag's marker (its own slot; `ENSURE_MARKER`: extended to the
//!   entry's TTL). A missing marker is created at the clock read just before, which is at least
//!   every value a lost marker can have held. A loader's value is refused when a marker is newer
//!   than its birth; a caller's write is born at the newest of its markers and the known clock.
//!   An invalidation between these steps and the write makes the entry dead on arrival (its
//!   marker is then newer): a miss, never a stale read.
//! - **Write, delete**: the entry's script (`SET_ENTRY_SLOT`, `DELETE_SLOT`: the lock is checked,
//!   marked or released as on one server), then the announcement with `SPUBLISH` on the key's
//!   bus shard channel ([`crate::keys::channel_for`]). The reply counts the processes
//!   subscribed there: all of them (each subscribes to every bus channel).
//! - **Tag invalidation**: advance the clock (its shard), raise the tag's marker to it (never
//!   lower: two invalidations may arrive in the other order), announce with the clock value.
//!
//! Every step goes through the L2's bound and breaker like any command; a step that fails
//! fails the operation, which the cache then retries or replays as on one server.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use futures_util::future::join_all;

use super::{Discard, L2Error, LoadedWrite, ReadOrLock, L2};
use crate::clock::now_us;
use crate::codec::Encoded;

/// Backoff between attempts to make the first cluster connection.
const CONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
const CONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Makes the cluster connections (data, and with `redis.waitReplicas` invalidations) in the
/// background, retrying with backoff until the seeds answer; ends once made or with the L2.
/// From then on the cluster client reconnects and follows the topology by itself.
pub(super) async fn connect(l2: Weak<L2>) {
    let mut backoff = CONNECT_BACKOFF_MIN;
    // bounded by the L2's life: each round waits at least the backoff
    loop {
        let Some(me) = l2.upgrade() else { return };
        let made = async {
            let client = me.connector.cluster_client(None)?;
            let conn = client.get_async_connection().await?;
            let inval = if me.wait_replicas > 0 {
                Some(client.get_async_connection().await?)
            } else {
                None
            };
            Ok::<_, redis::RedisError>((conn, inval))
        };
        let outcome = tokio::time::timeout(me.bound, made).await;
        if let Some(p) = me.problems.get() {
            crate::problems::observe(p, outcome.as_ref().map(|r| r.as_ref().err()), "connect");
        }
        if let Ok(Ok((conn, inval))) = outcome {
            *me.conn.write() = Some(super::DataConn::Cluster(conn));
            *me.inval.write() = inval.map(super::DataConn::Cluster);
            me.cluster_ready.send_replace(true);
            return;
        }
        drop(me);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(CONNECT_BACKOFF_MAX);
    }
}

impl L2 {
    /// Records an invalidation clock value known to have been handed out (see the module doc).
    pub fn learn_clock(&self, clock: u64) {
        self.clock_known.fetch_max(clock, Ordering::AcqRel);
    }

    /// Forgets the known clock (the bus was lost: announcements of invalidations may have been
    /// missed); the next lookup reads it from Redis. A known clock that lags stays correct but
    /// makes every entry of a tag invalidated meanwhile dead on arrival, until the next
    /// announcement.
    pub fn forget_clock(&self) {
        self.clock_known.store(0, Ordering::Release);
    }

    /// The invalidation clock now (started if missing), read from Redis.
    async fn read_clock(&self) -> Result<u64, L2Error> {
        let mut c = self.conn().await?;
        let mut inv = self.clock_now.key(self.keys.clock());
        inv.arg(now_us());
        let clock = parse_clock(self.bounded(inv.invoke_async::<String>(&mut c)).await?)?;
        self.learn_clock(clock);
        Ok(clock)
    }

    /// The birth of a load starting now: the known clock while the bus keeps it current, else
    /// the clock read from Redis.
    async fn birth(&self, clock_trusted: bool) -> Result<u64, L2Error> {
        let known = self.clock_known.load(Ordering::Acquire);
        if clock_trusted && known > 0 {
            return Ok(known);
        }
        self.read_clock().await
    }

    pub(super) async fn sharded_read_or_lock(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
        discard: Option<Discard>,
        clock_trusted: bool,
    ) -> Result<ReadOrLock, L2Error> {
        let mut c = self.conn().await?;
        let mut inv = self.read_or_lock_slot.key(self.keys.entry(key));
        inv.key(self.keys.lock(key));
        inv.arg(token).arg(ttl.as_millis() as u64);
        inv.arg(Discard::script_arg(discard));
        let reply: Vec<redis::Value> = self.bounded(inv.invoke_async(&mut c)).await?;
        self.slot_lock_reply(&reply, clock_trusted).await
    }

    /// A one-slot lookup or lock script's reply, with the load's birth put in: the script does
    /// not read the clock, so the birth comes from what this process knows.
    pub(super) async fn slot_lock_reply(
        &self,
        reply: &[redis::Value],
        clock_trusted: bool,
    ) -> Result<ReadOrLock, L2Error> {
        Ok(match self.read_or_lock_reply(reply)? {
            ReadOrLock::Acquired(_) => ReadOrLock::Acquired(self.birth(clock_trusted).await?),
            ReadOrLock::Busy(_) => ReadOrLock::Busy(self.birth(clock_trusted).await?),
            value => value,
        })
    }

    /// The markers of `tags` for an entry living `ttl`: each extended to at least `ttl`, a
    /// missing one created at the clock read now.
    async fn ensure_markers(&self, tags: &[String], ttl: Duration) -> Result<Vec<u64>, L2Error> {
        let ttl_ms = ttl.as_millis() as u64;
        let c = self.conn().await?;
        let ensure = |tag: &String, create: String| {
            let mut c = c.clone();
            let marker = self.keys.tag_marker(tag);
            async move {
                let mut inv = self.ensure_marker.key(marker);
                inv.arg(ttl_ms).arg(create);
                self.bounded(inv.invoke_async::<Option<String>>(&mut c))
                    .await
            }
        };
        let first = join_all(tags.iter().map(|t| ensure(t, String::new()))).await;
        let mut markers = Vec::with_capacity(tags.len());
        let mut missing = Vec::new();
        for (i, m) in first.into_iter().enumerate() {
            match m? {
                Some(m) => markers.push(parse_clock(m)?),
                None => {
                    markers.push(0);
                    missing.push(i);
                }
            }
        }
        if !missing.is_empty() {
            let clock = self.read_clock().await?.to_string();
            let made = join_all(missing.iter().map(|&i| ensure(&tags[i], clock.clone()))).await;
            for (&i, m) in missing.iter().zip(made) {
                let m = m?.ok_or_else(|| L2Error::Invalid("a marker was not created".into()))?;
                markers[i] = parse_clock(m)?;
            }
        }
        Ok(markers)
    }

    pub(super) async fn sharded_set(
        &self,
        key: &str,
        envelope: &Encoded,
        ttl: Duration,
        tags: &[String],
        notice: &str,
        load: Option<LoadedWrite<'_>>,
    ) -> Result<Option<u64>, L2Error> {
        let born = if tags.is_empty() {
            0
        } else {
            let markers = self.ensure_markers(tags, ttl).await?;
            let newest = markers.iter().copied().max().unwrap_or(0);
            match load {
                // a tag invalidated since the lookup (or a marker re-made after it): refused
                Some(l) if newest > l.born => return Ok(None),
                Some(l) => l.born,
                None => newest.max(self.clock_known.load(Ordering::Acquire)),
            }
        };
        let mut c = if load.is_none() {
            self.inval_conn().await?
        } else {
            self.conn().await?
        };
        let mut inv = self.set_entry_slot.key(self.keys.entry(key));
        inv.key(self.keys.lock(key));
        inv.arg(envelope.head())
            .arg(envelope.tail())
            .arg(ttl.as_millis() as u64)
            .arg(born)
            .arg(load.map_or("", |l| l.lock_token));
        let stored = self.bounded(inv.invoke_async::<u64>(&mut c)).await?;
        if stored != 1 {
            return Ok(None);
        }
        let receivers = self.publish(&mut c, self.channel_of(key), notice).await?;
        if load.is_none() {
            self.wait_for_replicas(&mut c, key).await;
        }
        Ok(Some(receivers))
    }

    pub(super) async fn sharded_del(
        &self,
        key: &str,
        notice: &str,
        expire_at: &str,
    ) -> Result<u64, L2Error> {
        let mut c = self.inval_conn().await?;
        let mut inv = self.delete_slot.key(self.keys.entry(key));
        inv.key(self.keys.lock(key)).arg(expire_at);
        self.bounded(inv.invoke_async::<u64>(&mut c)).await?;
        self.wait_for_replicas(&mut c, key).await;
        self.publish(&mut c, self.channel_of(key), notice).await
    }

    pub(super) async fn sharded_invalidate_tag(
        &self,
        tag: &str,
        notice: &str,
        mode: &str,
    ) -> Result<u64, L2Error> {
        let mut c = self.inval_conn().await?;
        let mut advance = self.clock_advance.key(self.keys.clock());
        advance.arg(now_us());
        let clock = parse_clock(self.bounded(advance.invoke_async::<String>(&mut c)).await?)?;
        self.learn_clock(clock);
        let marker = self.keys.tag_marker(tag);
        let mut raise = self.raise_marker.key(&marker);
        raise.key(self.keys.tag_deletion(tag));
        raise
            .arg(clock)
            .arg(self.marker_ttl.as_millis() as u64)
            .arg(mode);
        self.bounded(raise.invoke_async::<u64>(&mut c)).await?;
        self.wait_for_replicas(&mut c, &marker).await;
        let notice = crate::bus::with_clock(notice, clock);
        self.publish(&mut c, self.channel_of(tag), &notice).await
    }
}

/// A clock value as Redis stores it (a decimal string).
fn parse_clock(text: String) -> Result<u64, L2Error> {
    text.parse()
        .map_err(|_| L2Error::Invalid(format!("not an invalidation clock value: {text:?}")))
}
