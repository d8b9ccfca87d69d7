//! The Redis key layout of one prefix (layout version [`LAYOUT_VERSION`]).
//!
//! Each key's entry and stampede lock share the Redis Cluster hash tag `{<key>}`, so the scripts
//! that touch both stay in one slot, and a prefix spreads over every shard of a cluster. Each
//! tag's marker is in its tag's own slot. No key is touched by every operation: the
//! invalidation clock is read and advanced by tag invalidations, by writes that find a tag
//! marker missing, and by lookups while the bus is not subscribed, nothing else (see
//! [`crate::l2`]).
//!
//! | what | key | type |
//! |---|---|---|
//! | entry | `<prefix>:v3:{<key>}:k` | string: the [envelope](crate::codec), `PX` = entry TTL |
//! | stampede lock | `<prefix>:v3:{<key>}:l` | string: the owner's token, `PX` = lock TTL; `!<token>` once a write or delete of the key made the load in progress stale |
//! | tag marker | `<prefix>:v3:{<tag>}:m` | string: the invalidation clock at the tag's last invalidation (or at its first use); `PX` >= the longest TTL of an entry carrying it |
//! | invalidation clock | `<prefix>:v3:clock` | counter, advanced by every `invalidateTag` to one more and at least the wall clock in µs (so it outlives a Redis restart that lost it) |
//! | bus channel | `{<prefix>}:bus:v<N>` | pub/sub channel; `N` is the wire-format version; acknowledgements to a process on `<channel>:ack:<instance id>` |
//! | bus channels (cluster) | `{<prefix>#<i>}:bus:v<N>`, `i` < [`CLUSTER_BUS_CHANNELS`] | shard channels spread over the slots (so over the primaries); a key's or tag's messages always on the same one ([`channel_for`]); acknowledgements on `<channel>:ack:<instance id>`, the slot of the message they acknowledge |
//!
//! A key or tag that begins with `}` would make an empty hash tag (Redis then hashes the whole
//! name, and the entry and its lock could land in different slots): its names use the hash tag
//! `{~}` instead (`<prefix>:v3:~{~}<key>:k`), a form no other key can produce.
//!
//! An entry with tags is valid only while each tag's marker exists and is not newer than the
//! entry's birth stamp (see [`crate::codec`]): a lost marker (evicted, expired) makes a miss,
//! never a stale read.
//!
//! Two caches with different prefixes share no key and no channel: every name of a prefix
//! starts with `<prefix>:v3:` followed by `{`, `~{` or `clock`, and prefixes hold no braces.
//! The layout version is part of every name, so processes of an earlier layout (0.1, 0.2:
//! every name under `{<prefix>}:`) and of this one never read or overwrite each other's keys.

/// Shard channels of the bus on a cluster: every process subscribes to all of them, a message
/// goes on the one of its key or tag, so the publishing load spreads over the primaries.
pub const CLUSTER_BUS_CHANNELS: usize = 16;

/// The channel (of `channels`) that carries the messages about `name` (a key or tag): always
/// the same one, so the messages of one key stay in order.
pub fn channel_for<'a>(channels: &'a [String], name: &str) -> &'a str {
    let i = if channels.len() > 1 {
        cluster_slot(name) as usize % channels.len()
    } else {
        0
    };
    &channels[i]
}

/// Version of the key layout, part of every key name.
pub const LAYOUT_VERSION: u32 = 3;

/// Version of the bus message format, part of the channel name.
pub const WIRE_VERSION: u32 = 2;

/// The channel on which `instance` receives acknowledgements of its bus messages.
pub fn ack_channel(bus_channel: &str, instance: &str) -> String {
    format!("{bus_channel}:ack:{instance}")
}

/// Builds the Redis names of one prefix.
#[derive(Debug, Clone)]
pub struct Keyspace {
    /// `<prefix>:v3:`
    base: String,
    /// `{<prefix>}:`, the start of the bus channels
    bus_base: String,
}

impl Keyspace {
    /// The layout of `prefix` (already validated: no braces).
    pub fn new(prefix: &str) -> Self {
        Self {
            base: format!("{prefix}:v{LAYOUT_VERSION}:"),
            bus_base: format!("{{{prefix}}}:"),
        }
    }

    /// `<prefix>:v3:`, the start shared by every key of this prefix.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `base{name}suffix`, with the `{~}` form for a name that begins with `}`.
    fn slotted(&self, name: &str, suffix: &str) -> String {
        let mut s = String::with_capacity(self.base.len() + name.len() + 8);
        s.push_str(&self.base);
        if name.starts_with('}') {
            s.push_str("~{~}");
            s.push_str(name);
        } else {
            s.push('{');
            s.push_str(name);
            s.push('}');
        }
        s.push_str(suffix);
        s
    }

    /// The Redis key of an entry.
    pub fn entry(&self, key: &str) -> String {
        self.slotted(key, ":k")
    }

    /// The Redis key of a tag's marker.
    pub fn tag_marker(&self, tag: &str) -> String {
        self.slotted(tag, ":m")
    }

    /// The Redis key of a tag's deletion marker (the clock of its last invalidation that
    /// deleted rather than expired; in the marker's slot).
    pub fn tag_deletion(&self, tag: &str) -> String {
        self.slotted(tag, ":d")
    }

    /// A `SCAN MATCH` pattern for every entry of the prefix (glob characters escaped).
    pub fn entries_pattern(&self) -> String {
        let mut s = String::with_capacity(self.base.len() + 8);
        for c in self.base.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                s.push('\\');
            }
            s.push(c);
        }
        // `{` or `~` (the `{~}` form) first: the names of a longer prefix have `:` there
        s.push_str("[{~]*:k");
        s
    }

    /// The Redis key of a key's stampede lock.
    pub fn lock(&self, key: &str) -> String {
        self.slotted(key, ":l")
    }

    /// The invalidation clock of the prefix.
    pub fn clock(&self) -> String {
        format!("{}clock", self.base)
    }

    /// The pub/sub channel of the invalidation bus (wire format [`WIRE_VERSION`]).
    pub fn bus_channel(&self) -> String {
        format!("{}bus:v{WIRE_VERSION}", self.bus_base)
    }

    /// The bus channels: the one channel on a single server, [`CLUSTER_BUS_CHANNELS`] shard
    /// channels with distinct hash tags on a cluster.
    pub fn bus_channels(&self, cluster: bool) -> Vec<String> {
        if !cluster {
            return vec![self.bus_channel()];
        }
        let prefix = &self.bus_base[1..self.bus_base.len() - 2];
        (0..CLUSTER_BUS_CHANNELS)
            .map(|i| format!("{{{prefix}#{i}}}:bus:v{WIRE_VERSION}"))
            .collect()
    }
}

/// Redis Cluster's slot of a key: CRC16 of its hash tag (or of all of it).
pub fn cluster_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let part = match key.find('{') {
        Some(open) => match key[open + 1..].find('}') {
            Some(0) | None => bytes,
            Some(len) => &bytes[open + 1..open + 1 + len],
        },
        None => bytes,
    };
    let mut crc: u16 = 0;
    for &b in part {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_slotted_per_key_and_prefix_isolated() {
        let a = Keyspace::new("shop");
        assert_eq!(a.entry("user:42"), "shop:v3:{user:42}:k");
        assert_eq!(a.lock("user:42"), "shop:v3:{user:42}:l");
        assert_eq!(a.tag_marker("user:42"), "shop:v3:{user:42}:m");
        assert_eq!(a.clock(), "shop:v3:clock");
        assert_eq!(a.bus_channel(), "{shop}:bus:v2");
        assert_eq!(a.bus_channels(false), vec!["{shop}:bus:v2".to_string()]);
        let sharded = a.bus_channels(true);
        assert_eq!(sharded[3], "{shop#3}:bus:v2");
        let slots: std::collections::HashSet<u16> =
            sharded.iter().map(|c| cluster_slot(c)).collect();
        assert_eq!(slots.len(), CLUSTER_BUS_CHANNELS);
        assert_eq!(channel_for(&sharded, "k"), channel_for(&sharded, "k"));
        assert_eq!(Keyspace::new("a*b").entries_pattern(), "a\\*b:v3:[{~]*:k");
        // an empty hash tag would split an entry from its lock
        assert_eq!(a.entry("}x"), "shop:v3:~{~}}x:k");
        assert_eq!(a.lock("}x"), "shop:v3:~{~}}x:l");
        // no key of one prefix is a key of another
        let b = Keyspace::new("shop:v3:");
        for k in ["x", "}x", "{x}"] {
            assert_ne!(a.entry(k), b.entry(k));
        }
        assert!(!Keyspace::new("shop2").entry("x").starts_with(a.base()));
    }

    #[test]
    fn an_entry_and_its_lock_share_a_slot_whatever_the_key() {
        let a = Keyspace::new("p");
        for k in ["x", "}", "}x", "{", "{}", "a}b", "a{b}c", "}}{", "ünï"] {
            assert_eq!(
                cluster_slot(&a.entry(k)),
                cluster_slot(&a.lock(k)),
                "key {k:?}"
            );
        }
        assert_eq!(cluster_slot("123456789"), 12739);
        // keys spread: 1 000 keys take hundreds of slots
        let slots: std::collections::HashSet<u16> = (0..1000)
            .map(|i| cluster_slot(&a.entry(&format!("k{i}"))))
            .collect();
        assert!(slots.len() > 900, "{}", slots.len());
    }
}
