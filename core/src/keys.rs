//! The Redis key layout of one prefix.
//!
//! Every key of a prefix carries the Redis Cluster hash tag `{<prefix>}`, so a whole namespace
//! lives in one cluster slot and every multi-key script (writes, locks) stays atomic there:
//!
//! | what | key | type |
//! |---|---|---|
//! | entry | `{<prefix>}:k:<key>` | string: the [envelope](crate::codec), `PX` = entry TTL |
//! | tag marker | `{<prefix>}:m:<tag>` | string: the invalidation clock at the tag's last invalidation (or at its first use); `PX` >= the longest TTL of an entry carrying it |
//! | stampede lock | `{<prefix>}:l:<key>` | string: the owner's token, `PX` = lock TTL; `!<token>` once a write or delete of the key made the load in progress stale |
//! | invalidation clock | `{<prefix>}:clock` | counter, advanced by every `invalidateTag` to one more and at least the wall clock in µs (so it outlives a Redis restart that lost it) |
//! | bus channel | `{<prefix>}:bus:v<N>` | pub/sub channel; `N` is the wire-format version |
//!
//! An entry with tags is valid only while each tag's marker exists and is not newer than the
//! entry's birth stamp (see [`crate::codec`]): a lost marker (evicted, expired) makes a miss,
//! never a stale read.
//!
//! Two caches with different prefixes share no key and no channel.

/// Version of the bus message format, part of the channel name.
pub const WIRE_VERSION: u32 = 1;

/// The channel on which `instance` receives acknowledgements of its bus messages.
pub fn ack_channel(bus_channel: &str, instance: &str) -> String {
    format!("{bus_channel}:ack:{instance}")
}

/// Builds the Redis names of one prefix.
#[derive(Debug, Clone)]
pub struct Keyspace {
    base: String,
}

impl Keyspace {
    /// The layout of `prefix` (already validated: no braces).
    pub fn new(prefix: &str) -> Self {
        Self {
            base: format!("{{{prefix}}}:"),
        }
    }

    /// `{<prefix>}:`, the start shared by every name of this prefix.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn join(&self, kind: &str, name: &str) -> String {
        let mut s = String::with_capacity(self.base.len() + kind.len() + name.len());
        s.push_str(&self.base);
        s.push_str(kind);
        s.push_str(name);
        s
    }

    /// The Redis key of an entry.
    pub fn entry(&self, key: &str) -> String {
        self.join("k:", key)
    }

    /// The Redis key of a tag's marker.
    pub fn tag_marker(&self, tag: &str) -> String {
        self.join("m:", tag)
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
        s.push_str("k:*");
        s
    }

    /// The Redis key of a key's stampede lock.
    pub fn lock(&self, key: &str) -> String {
        self.join("l:", key)
    }

    /// The invalidation clock of the prefix.
    pub fn clock(&self) -> String {
        self.join("clock", "")
    }

    /// The pub/sub channel of the invalidation bus (wire format [`WIRE_VERSION`]).
    pub fn bus_channel(&self) -> String {
        format!("{}bus:v{WIRE_VERSION}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_hash_tagged_and_prefix_isolated() {
        let a = Keyspace::new("shop");
        assert_eq!(a.entry("user:42"), "{shop}:k:user:42");
        assert_eq!(a.tag_marker("user:42"), "{shop}:m:user:42");
        assert_eq!(Keyspace::new("a*b").entries_pattern(), "{a\\*b}:k:*");
        assert_eq!(a.lock("user:42"), "{shop}:l:user:42");
        assert_eq!(a.bus_channel(), "{shop}:bus:v1");
        let b = Keyspace::new("shop2");
        assert!(!b.entry("x").starts_with(a.base()));
    }
}
