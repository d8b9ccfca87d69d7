//! The invalidation bus: Redis pub/sub between every process sharing a prefix.
//!
//! A write, delete or tag invalidation is announced on `{<prefix>}:bus:v<WIRE_VERSION>` in the
//! same round trip as the Redis change itself (a pipeline or the Lua script), so a receiver that
//! drops its L1 copy and reads Redis again finds the new state. A message names a key or a tag,
//! never a value:
//!
//! ```text
//! <instance id>|<op>|<name>     op: s:<write id> = key set, d = key deleted,
//!                                   t = tag invalidated (t:<clock> on a cluster:
//!                                       the invalidation clock value it set),
//!                                   r = stampede lock released without a value
//! ```
//!
//! A process ignores its own messages (by instance id). The wire version is part of the channel
//! name: a future format is published on a new channel, so during a rolling upgrade old and new
//! processes never read each other's bytes.
//!
//! ## Acknowledgements
//! A `set`, `del` or `invalidateTag` asks for acknowledgements: its instance field is
//! `<instance id>#<sequence>` (a process of an earlier version reads that as a foreign instance
//! id, so it still applies the message). Every receiver applies the message to its L1 first, then
//! publishes the sequence number on the sender's own channel, `<bus channel>:ack:<instance id>`,
//! to which each subscriber is also subscribed. The sender's own subscriber acknowledges its
//! own messages locally, so the sender expects exactly as many acknowledgements as `PUBLISH`
//! counted receivers, and resolves the write when they are in or after `bus.ackTimeout`
//! (see `crate::acks`): when `del` resolves, no other connected process still serves the old
//! copy from its L1.
//!
//! ## On a cluster
//! The bus is [`crate::keys::CLUSTER_BUS_CHANNELS`] shard channels (`SSUBSCRIBE`/`SPUBLISH`,
//! Redis >= 7) with distinct hash tags, so they spread over the primaries. Every process
//! subscribes to all of them (and to its acknowledgement channel of each, in the same slot); a
//! message goes on the channel of its key or tag, so one key's messages stay in order, and
//! `SPUBLISH`'s reply counts every subscriber (a classic `PUBLISH` on a cluster counts only the
//! subscribers of the node it ran on). An acknowledgement goes back on the channel the message
//! came on. When a primary fails over, a slot migrates (Redis then ends the subscription with
//! `sunsubscribe`), any node connection of the subscriber drops, or a primary does not answer
//! the heartbeat, the subscriber builds a new connection, subscribes again and reports it as a
//! resubscription (L1 is cleared).
//!
//! ## Behavior on connection loss
//! The subscriber runs on its own connection and pings Redis every second. When that connection
//! drops or a ping goes unanswered within `redis.commandTimeout`, the subscriber reconnects with
//! backoff (50 ms doubling to 1 s). Messages published meanwhile are lost, so after every
//! *re*-subscription the handler is told to make L1 safe (the cache clears it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::runtime::Handle;
use tokio::sync::watch;

pub use crate::keys::{ack_channel, WIRE_VERSION};

const HEARTBEAT: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What another process announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A key was written, by the write with this id (see [`crate::codec`]).
    KeyChanged(String, u64),
    /// A key was deleted.
    KeyDeleted(String),
    /// Every entry with this tag was invalidated.
    TagInvalidated(String),
    /// A stampede lock on this key was released without a value being written.
    LockReleased(String),
    /// Every entry of the prefix was invalidated (a replay queue that overflowed).
    AllInvalidated,
}

/// Builds a message.
pub fn encode(instance: &str, event: &BusEvent) -> String {
    let (op, name) = match event {
        BusEvent::KeyChanged(k, w) => return format!("{instance}|s:{w}|{k}"),
        BusEvent::KeyDeleted(k) => ('d', k),
        BusEvent::TagInvalidated(t) => ('t', t),
        BusEvent::LockReleased(k) => ('r', k),
        BusEvent::AllInvalidated => return format!("{instance}|a|*"),
    };
    format!("{instance}|{op}|{name}")
}

/// Builds a message whose receivers acknowledge it with `seq` (see "Acknowledgements").
pub fn encode_acked(instance: &str, seq: u64, event: &BusEvent) -> String {
    encode(&format!("{instance}#{seq}"), event)
}

/// A decoded message: the sender's instance id, the acknowledgement it asks for, the event.
#[derive(Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// The sender's instance id.
    pub from: &'a str,
    /// The sequence number to acknowledge, if the sender waits for acknowledgements.
    pub ack: Option<u64>,
    /// The invalidation clock value a tag invalidation set (on a cluster).
    pub clock: Option<u64>,
    /// What happened.
    pub event: BusEvent,
}

/// Reads a message: `None` when malformed (ignored and counted by the caller).
pub fn decode(payload: &[u8]) -> Option<Message<'_>> {
    let text = std::str::from_utf8(payload).ok()?;
    let (sender, rest) = text.split_once('|')?;
    let (op, name) = rest.split_once('|')?;
    let (instance, ack) = match sender.split_once('#') {
        Some((instance, seq)) => (instance, Some(seq.parse().ok()?)),
        None => (sender, None),
    };
    if instance.is_empty() || name.is_empty() {
        return None;
    }
    let mut clock = None;
    let event = match op {
        "s" => BusEvent::KeyChanged(name.to_string(), 0),
        op if op.starts_with("s:") => BusEvent::KeyChanged(name.to_string(), op[2..].parse().ok()?),
        "d" => BusEvent::KeyDeleted(name.to_string()),
        "t" => BusEvent::TagInvalidated(name.to_string()),
        op if op.starts_with("t:") => {
            clock = Some(op[2..].parse().ok()?);
            BusEvent::TagInvalidated(name.to_string())
        }
        "r" => BusEvent::LockReleased(name.to_string()),
        "a" => BusEvent::AllInvalidated,
        _ => return None,
    };
    Some(Message {
        from: instance,
        ack,
        clock,
        event,
    })
}

/// A tag invalidation's notice (as [`encode`] or [`encode_acked`] made it) carrying the clock
/// value the invalidation set; any other notice unchanged.
pub fn with_clock(notice: &str, clock: u64) -> String {
    match notice.split_once("|t|") {
        Some((sender, tag)) if !sender.contains('|') => format!("{sender}|t:{clock}|{tag}"),
        _ => notice.to_string(),
    }
}

/// Receives what the bus delivers.
pub trait BusHandler: Send + Sync + 'static {
    /// A message from another process.
    fn on_event(&self, event: BusEvent);
    /// Another process asks for an acknowledgement of the message just given to `on_event`,
    /// which arrived on bus channel `channel`.
    fn on_ack_request(&self, channel: &str, from: &str, seq: u64);
    /// An acknowledgement of this process's message `seq` (from another process, or from this
    /// process's own subscriber).
    fn on_ack(&self, seq: u64);
    /// A message that could not be read.
    fn on_malformed(&self);
    /// Another process's tag invalidation set the invalidation clock to `clock` (cluster).
    fn on_clock(&self, clock: u64);
    /// The subscription is (again) active. `resubscribed` is true after a loss, or after a first
    /// attempt that failed (the cache was already serving without the bus): messages may have
    /// been missed.
    fn on_subscribed(&self, resubscribed: bool);
}

/// Settings of the subscriber.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Where to connect (one server, or the master Sentinel names).
    pub connector: crate::connection::Connector,
    /// The bus channels (one; several shard channels on a cluster).
    pub channels: Vec<String>,
    /// This process's instance id (messages carrying it are ignored).
    pub instance: String,
    /// Bound on connecting.
    pub connect_timeout: Duration,
    /// Bound on a heartbeat ping.
    pub command_timeout: Duration,
    /// Where failed subscription attempts are reported (see [`crate::problems`]).
    pub problems: Option<Arc<crate::problems::Problems>>,
}

/// A running subscriber. Dropping it (or [`Bus::stop`]) ends the task and its connection.
pub struct Bus {
    stop: watch::Sender<bool>,
    connected: Arc<AtomicBool>,
    first_attempt: watch::Receiver<bool>,
}

impl Bus {
    /// Starts the subscriber on `rt`.
    pub fn start(rt: &Handle, config: BusConfig, handler: Arc<dyn BusHandler>) -> Bus {
        let (stop, stop_rx) = watch::channel(false);
        let (attempted_tx, first_attempt) = watch::channel(false);
        let connected = Arc::new(AtomicBool::new(false));
        rt.spawn(run(
            config,
            handler,
            stop_rx,
            attempted_tx,
            connected.clone(),
        ));
        Bus {
            stop,
            connected,
            first_attempt,
        }
    }

    /// Whether the subscription is active now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Waits (within `bound`) until the first subscription attempt has finished, so the first
    /// operations of a new cache do not run before it listens.
    pub async fn first_attempt_done(&self, bound: Duration) {
        let mut rx = self.first_attempt.clone();
        let _ = tokio::time::timeout(bound, rx.wait_for(|done| *done)).await;
    }

    /// Stops the subscriber.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn run(
    config: BusConfig,
    handler: Arc<dyn BusHandler>,
    mut stop: watch::Receiver<bool>,
    attempted: watch::Sender<bool>,
    connected: Arc<AtomicBool>,
) {
    let mut backoff = BACKOFF_MIN;
    // true once the cache may have missed messages: after a subscription was lost, or after an
    // attempt failed (operations wait only for the first attempt, then run without the bus)
    let mut may_have_missed = false;
    loop {
        if *stop.borrow() {
            return;
        }
        let attempt = tokio::time::timeout(config.connect_timeout, subscribe(&config)).await;
        let _ = attempted.send(true);
        if let Some(p) = &config.problems {
            crate::problems::observe(p, attempt.as_ref().map(|r| r.as_ref().err()), "subscribe");
        }
        if let Ok(Ok(subscription)) = attempt {
            connected.store(true, Ordering::Release);
            handler.on_subscribed(may_have_missed);
            backoff = BACKOFF_MIN;
            let stopped = listen(subscription, &config, handler.as_ref(), &mut stop).await;
            connected.store(false, Ordering::Release);
            if stopped {
                return;
            }
        }
        // the attempt failed or the subscription was lost
        may_have_missed = true;
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// An active subscription: on one server (or Sentinel's master) a pub/sub connection; on a
/// cluster a RESP3 cluster connection subscribed to the shard channels, whose pushes arrive on
/// the receiver.
enum Subscription {
    Single(redis::aio::PubSub),
    Cluster(
        redis::cluster_async::ClusterConnection,
        tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>,
    ),
}

async fn subscribe(config: &BusConfig) -> redis::RedisResult<Subscription> {
    let channels: Vec<String> = config
        .channels
        .iter()
        .flat_map(|c| [c.clone(), ack_channel(c, &config.instance)])
        .collect();
    if config.connector.is_cluster() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let client = config.connector.cluster_client(Some(tx))?;
        let mut conn = client.get_async_connection().await?;
        // one SSUBSCRIBE per slot: a bus channel and its acknowledgement channel
        for pair in channels.chunks(2) {
            conn.ssubscribe(pair).await?;
        }
        return Ok(Subscription::Cluster(conn, rx));
    }
    config.connector.resolve().await;
    let client = config.connector.client()?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&channels).await?;
    Ok(Subscription::Single(pubsub))
}

/// Delivers messages until the connection is lost (false) or the bus is stopped (true).
async fn listen(
    subscription: Subscription,
    config: &BusConfig,
    handler: &dyn BusHandler,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    match subscription {
        Subscription::Single(pubsub) => listen_single(pubsub, config, handler, stop).await,
        Subscription::Cluster(conn, pushes) => {
            listen_cluster(conn, pushes, config, handler, stop).await
        }
    }
}

/// Hands one message to the handler: an acknowledgement on one of our own channels (their
/// names end with `acks`, `:ack:<instance id>`), or an event.
fn deliver(
    channel: &[u8],
    payload: &[u8],
    acks: &str,
    config: &BusConfig,
    handler: &dyn BusHandler,
) {
    if channel.ends_with(acks.as_bytes()) {
        match std::str::from_utf8(payload)
            .ok()
            .and_then(|s| s.parse().ok())
        {
            Some(seq) => handler.on_ack(seq),
            None => handler.on_malformed(),
        }
        return;
    }
    match decode(payload) {
        Some(m) if m.from == config.instance => {
            // our own subscriber counts among the receivers PUBLISH reported
            if let Some(seq) = m.ack {
                handler.on_ack(seq);
            }
        }
        Some(m) => {
            if let Some(clock) = m.clock {
                handler.on_clock(clock);
            }
            handler.on_event(m.event);
            if let Some(seq) = m.ack {
                handler.on_ack_request(&String::from_utf8_lossy(channel), m.from, seq);
            }
        }
        None => handler.on_malformed(),
    }
}

async fn listen_single(
    pubsub: redis::aio::PubSub,
    config: &BusConfig,
    handler: &dyn BusHandler,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let (mut sink, mut stream) = pubsub.split();
    // a new master (Sentinel failover): subscribe there; messages may have been missed
    let mut master = config.connector.changes();
    master.mark_unchanged();
    // one server: the sender is gone at once, and nothing ever moves
    let master_moved = async move {
        if master.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(master_moved);
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    let acks = ack_channel("", &config.instance);
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return false };
                let channel = msg.get_channel_name().as_bytes().to_vec();
                deliver(&channel, msg.get_payload_bytes(), &acks, config, handler);
            }
            _ = &mut master_moved => return false,
            _ = heartbeat.tick() => {
                let ping = tokio::time::timeout(config.command_timeout, sink.ping::<redis::Value>()).await;
                if !matches!(ping, Ok(Ok(_))) {
                    return false;
                }
            }
            _ = stop.changed() => return true,
        }
    }
}

/// The cluster's subscriber: shard-channel messages come as pushes. The subscription counts
/// as lost (the caller subscribes anew on a new connection, and L1 is cleared) when Redis
/// ends it (`sunsubscribe`: the slot moved), when any node connection drops (the client may
/// have resubscribed on its own, after messages were missed), or when a primary does not
/// answer a heartbeat.
async fn listen_cluster(
    mut conn: redis::cluster_async::ClusterConnection,
    mut pushes: tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>,
    config: &BusConfig,
    handler: &dyn BusHandler,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    let acks = ack_channel("", &config.instance);
    loop {
        tokio::select! {
            push = pushes.recv() => {
                let Some(push) = push else { return false };
                match push.kind {
                    redis::PushKind::SMessage | redis::PushKind::Message => {
                        if let [redis::Value::BulkString(channel), redis::Value::BulkString(payload)] = push.data.as_slice() {
                            deliver(channel, payload, &acks, config, handler);
                        }
                    }
                    redis::PushKind::SUnsubscribe | redis::PushKind::Disconnection => return false,
                    _ => {}
                }
            }
            _ = heartbeat.tick() => {
                // every primary holds some of the channels
                let route = RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllMasters,
                    Some(ResponsePolicy::AllSucceeded),
                ));
                let ping = conn.route_command(redis::cmd("PING"), route);
                if !matches!(tokio::time::timeout(config.command_timeout, ping).await, Ok(Ok(_))) {
                    return false;
                }
            }
            _ = stop.changed() => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_rejected() {
        for e in [
            BusEvent::KeyChanged("user:42|x".into(), 42),
            BusEvent::KeyDeleted("k".into()),
            BusEvent::TagInvalidated("ünï".into()),
            BusEvent::LockReleased("k".into()),
            BusEvent::AllInvalidated,
        ] {
            let m = encode("abc", &e);
            let d = decode(m.as_bytes()).unwrap();
            assert_eq!((d.from, d.ack, &d.event), ("abc", None, &e));
            let m = encode_acked("abc", 7, &e);
            let d = decode(m.as_bytes()).unwrap();
            assert_eq!((d.from, d.ack, d.event), ("abc", Some(7), e));
        }
        let tag = encode_acked("abc", 7, &BusEvent::TagInvalidated("a|t|b".into()));
        let m = with_clock(&tag, 42);
        assert_eq!(m, "abc#7|t:42|a|t|b");
        let d = decode(m.as_bytes()).unwrap();
        assert_eq!(
            (d.from, d.ack, d.clock, d.event),
            (
                "abc",
                Some(7),
                Some(42),
                BusEvent::TagInvalidated("a|t|b".into())
            )
        );
        let del = encode("abc", &BusEvent::KeyDeleted("x|t|y".into()));
        assert_eq!(with_clock(&del, 42), del);
        assert_eq!(decode(b"abc|t:x|k"), None);
        for bad in [
            &b""[..],
            b"abc",
            b"abc|s",
            b"abc|x|k",
            b"|s|k",
            b"abc|s|",
            b"\xff|s|k",
            b"abc#|d|k",
            b"abc#x|d|k",
            b"#1|d|k",
        ] {
            assert_eq!(decode(bad), None);
        }
    }
}
