//! The Redis key layout of one prefix.
//!
//! Every key of a prefix carries the Redis Cluster hash tag `{<prefix>}`, so a whole namespace
//! lives in one cluster slot and every multi-key script (tags, locks) stays atomic there:
//!
//! | what | key | type |
//! |---|---|---|
//! | entry | `{<prefix>}:k:<key>` | string: the [envelope](crate::codec), `PX` = entry TTL |
//! | tag index | `{<prefix>}:t:<tag>` | sorted set: member = entry's Redis key, score = its expiry (ms) |
//! | stampede lock | `{<prefix>}:l:<key>` | string: the owner's random token, `PX` = lock TTL |
//! | invalidation clock | `{<prefix>}:clock` | counter, advanced by every `del`/`invalidateTag` to one more and at least the wall clock in µs (so it outlives a Redis restart that lost it) |
//! | key tombstone | `{<prefix>}:x:k:<key>` | the clock at the key's last delete, `PX` = tombstone TTL |
//! | tag tombstone | `{<prefix>}:x:t:<tag>` | the clock at the tag's last invalidation, same TTL |
//! | bus channel | `{<prefix>}:bus:v<N>` | pub/sub channel; `N` is the wire-format version |
//!
//! Two caches with different prefixes share no key and no channel.

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

    /// The Redis key of a tag's index.
    pub fn tag(&self, tag: &str) -> String {
        self.join("t:", tag)
    }

    /// The Redis key of a key's stampede lock.
    pub fn lock(&self, key: &str) -> String {
        self.join("l:", key)
    }

    /// The invalidation clock of the prefix.
    pub fn clock(&self) -> String {
        self.join("clock", "")
    }

    /// The tombstone of a deleted key.
    pub fn key_tombstone(&self, key: &str) -> String {
        self.join("x:k:", key)
    }

    /// The tombstone of an invalidated tag.
    pub fn tag_tombstone(&self, tag: &str) -> String {
        self.join("x:t:", tag)
    }

    /// The pub/sub channel of the invalidation bus, wire-format `version`.
    pub fn bus_channel(&self, version: u32) -> String {
        format!("{}bus:v{version}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_hash_tagged_and_prefix_isolated() {
        let a = Keyspace::new("shop");
        assert_eq!(a.entry("user:42"), "{shop}:k:user:42");
        assert_eq!(a.tag("user:42"), "{shop}:t:user:42");
        assert_eq!(a.lock("user:42"), "{shop}:l:user:42");
        assert_eq!(a.bus_channel(1), "{shop}:bus:v1");
        let b = Keyspace::new("shop2");
        assert!(!b.entry("x").starts_with(a.base()));
    }
}
