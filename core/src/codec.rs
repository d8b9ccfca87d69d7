//! The envelope a value travels in through Redis.
//!
//! A Redis value is one JSON object, version first and the caller's value last:
//!
//! ```text
//! {"v":2,"e":1767225600000,"g":30000,"r":1767225450000,"l":300000,"w":8123,"t":["user:42"],"b":1767225599123456,"d":{"name":"Ada"}}
//! ```
//!
//! - `v`: envelope version (readers treat an unknown version as a miss, so a rolling upgrade is safe);
//! - `e`: absolute expiry of the fresh value, Unix milliseconds, so a copy in another process's
//!   L1 never outlives it. Always second: `expire` rewrites it in place (a Lua pattern), and the
//!   lookups compare it with the time;
//! - `g`: the entry's grace in milliseconds, absent when 0: Redis keeps it that long past `e`
//!   (its `PX` is the ttl plus the grace), as the fail-safe copy a loader failure falls back
//!   on. Always third when present (`expire` looks for it);
//! - `r`: when a hit starts an eager refresh (Unix ms), absent without `eagerRefresh`;
//! - `l`: the L1 TTL in milliseconds when the entry was written with a per-entry `ttl` (absent: the
//!   reader's own `l1.ttl`);
//! - `t`: the entry's tags, so a process that copies it into L1 can invalidate it by tag;
//! - `b`: the entry's birth on the prefix's invalidation clock (see [`crate::l2`]): the clock when
//!   a caller's write reached Redis, or the clock a loader's lookup saw before the loader ran. The
//!   entry is valid only while every tag's marker exists and is not newer than `b`. Redis writes
//!   it (the script puts it between [`Encoded::head`] and [`Encoded::tail`]); 0 for an entry
//!   without tags, where it is never read;
//! - `w`: the write's id, also named in the write's bus message, so a process that already
//!   copied exactly this write into L1 keeps it when the message arrives;
//! - `d`: the value, as the caller's `JSON.stringify` produced it. It is handed back to JavaScript
//!   as a string slice, never converted value by value.
//!
//! Anything read from Redis is untrusted: [`decode`] validates all of it and a malformed
//! envelope is an error the cache counts and treats as a miss.

use std::fmt::Write;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The envelope version of an entry without grace or eager refresh.
///
/// Version 2 added `b` (tags became markers checked on read); a version-1 entry is a miss.
pub const ENVELOPE_VERSION: u32 = 2;

/// The envelope version of an entry with a grace or an eager refresh (`g`, `r`): Redis keeps
/// it past its fresh expiry `e`, which a reader of version 2 (0.3) would not check, so such a
/// reader must not take it for its own: an unknown version is a miss there. This build reads
/// both.
pub const ENVELOPE_VERSION_FRESHNESS: u32 = 3;

/// A decoded envelope, borrowing from the Redis bytes.
#[derive(Debug, PartialEq)]
pub struct Envelope<'a> {
    /// Absolute expiry of the fresh value in Unix milliseconds.
    pub expires_at_ms: u64,
    /// How long past `expires_at_ms` the entry is kept as a fail-safe copy (0: not at all).
    pub grace_ms: u64,
    /// When a hit starts an eager refresh (Unix ms), if the writer asked for one.
    pub refresh_at_ms: Option<u64>,
    /// The writer's per-entry L1 TTL in milliseconds, if it set one.
    pub l1_ttl_ms: Option<u64>,
    /// The entry's tags.
    pub tags: Vec<String>,
    /// The id of the write that stored it (0 when absent).
    pub write_id: u64,
    /// Its birth on the invalidation clock (0 when absent).
    pub born: u64,
    /// The value's JSON text.
    pub value_json: &'a str,
}

#[derive(Deserialize)]
struct Wire<'a> {
    v: u32,
    e: u64,
    #[serde(default)]
    g: u64,
    #[serde(default)]
    r: Option<u64>,
    #[serde(default)]
    l: Option<u64>,
    #[serde(default)]
    w: u64,
    #[serde(default)]
    t: Vec<String>,
    #[serde(default)]
    b: u64,
    #[serde(borrow)]
    d: &'a RawValue,
}

/// Why an envelope was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not UTF-8, not JSON, or not the envelope's shape.
    Malformed,
    /// A version this build does not read.
    UnknownVersion(u32),
}

/// An envelope without its birth stamp: `head`, then the stamp, then `tail` is the stored
/// text. Redis puts the stamp in (it knows the invalidation clock), so a value travels once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    text: String,
    split: usize,
}

impl Encoded {
    /// Everything before the birth stamp (ends with `"b":`); the whole envelope, with birth 0,
    /// for an entry without tags.
    pub fn head(&self) -> &str {
        &self.text[..self.split]
    }

    /// Everything after the birth stamp (`,"d":<value>}`); empty for an entry without tags.
    pub fn tail(&self) -> &str {
        &self.text[self.split..]
    }

    /// The whole envelope with `born` put in (an entry without tags keeps its 0).
    pub fn with_born(&self, born: u64) -> String {
        if self.tail().is_empty() {
            return self.text.clone();
        }
        format!("{}{born}{}", self.head(), self.tail())
    }
}

/// When an entry is fresh, how long it is kept past that, and when it is refreshed early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lifetime {
    /// Absolute expiry of the fresh value, Unix ms.
    pub expires_at_ms: u64,
    /// Grace past it, ms (0: none).
    pub grace_ms: u64,
    /// When a hit starts an eager refresh, Unix ms.
    pub refresh_at_ms: Option<u64>,
}

/// Builds the envelope around a value's JSON text, in two parts around its birth stamp.
///
/// `value_json` must be valid JSON (the binding passes `JSON.stringify`'s output).
pub fn encode(
    value_json: &str,
    life: Lifetime,
    l1_ttl_ms: Option<u64>,
    write_id: u64,
    tags: &[String],
) -> Encoded {
    let tags_json = serde_json::to_string(tags).expect("strings always serialize");
    let mut text = String::with_capacity(value_json.len() + tags_json.len() + 80);
    let _ = write!(
        text,
        "{{\"v\":{},\"e\":{}",
        if life.grace_ms > 0 || life.refresh_at_ms.is_some() {
            ENVELOPE_VERSION_FRESHNESS
        } else {
            ENVELOPE_VERSION
        },
        life.expires_at_ms
    );
    if life.grace_ms > 0 {
        let _ = write!(text, ",\"g\":{}", life.grace_ms);
    }
    if let Some(r) = life.refresh_at_ms {
        let _ = write!(text, ",\"r\":{r}");
    }
    if let Some(l) = l1_ttl_ms {
        let _ = write!(text, ",\"l\":{l}");
    }
    let _ = write!(text, ",\"w\":{write_id},\"t\":{tags_json},\"b\":");
    if tags.is_empty() {
        // nothing reads the birth of an entry without tags: it is written here as 0, and the
        // envelope travels whole (the script stores `head` as it is when `tail` is empty)
        let _ = write!(text, "0,\"d\":{value_json}}}");
        let split = text.len();
        return Encoded { text, split };
    }
    let split = text.len();
    let _ = write!(text, ",\"d\":{value_json}}}");
    Encoded { text, split }
}

/// Whether an envelope (its first bytes suffice) was stored by write `write_id`: how a script
/// recognizes an entry a reader found invalid, to delete exactly that one.
pub fn write_marker(write_id: u64) -> String {
    format!(",\"w\":{write_id},")
}

/// Reads an envelope from Redis bytes. Never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<Envelope<'_>, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::Malformed)?;
    let wire: Wire<'_> = serde_json::from_str(text).map_err(|_| DecodeError::Malformed)?;
    if wire.v != ENVELOPE_VERSION && wire.v != ENVELOPE_VERSION_FRESHNESS {
        return Err(DecodeError::UnknownVersion(wire.v));
    }
    if wire.t.iter().any(|t| t.is_empty()) {
        return Err(DecodeError::Malformed);
    }
    Ok(Envelope {
        expires_at_ms: wire.e,
        grace_ms: wire.g,
        refresh_at_ms: wire.r,
        l1_ttl_ms: wire.l,
        tags: wire.t,
        write_id: wire.w,
        born: wire.b,
        value_json: wire.d.get(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_value_text_exactly() {
        let tags = vec!["user:42".to_string(), "ünï\"code".to_string()];
        for value in [
            "0",
            "false",
            "\"\"",
            "[]",
            "{}",
            "{\"a\":[1,2,{\"b\":null}]}",
            "\"\\u2028\"",
        ] {
            let life = Lifetime {
                expires_at_ms: 1234,
                grace_ms: 30_000,
                refresh_at_ms: Some(1000),
            };
            let env = encode(value, life, Some(50), 7, &tags).with_born(1_767_225_599_123_456);
            assert!(env.starts_with("{\"v\":3,\"e\":1234,\"g\":30000,"), "{env}");
            let d = decode(env.as_bytes()).unwrap();
            assert_eq!(d.born, 1_767_225_599_123_456);
            assert!(env.contains(&write_marker(7)));
            assert_eq!(d.value_json, value);
            assert_eq!(d.expires_at_ms, 1234);
            assert_eq!(d.grace_ms, 30_000);
            assert_eq!(d.refresh_at_ms, Some(1000));
            assert_eq!(d.l1_ttl_ms, Some(50));
            assert_eq!(d.tags, tags);
        }
        let life = Lifetime {
            expires_at_ms: 9,
            ..Lifetime::default()
        };
        let env = encode("1", life, None, 7, &[]).with_born(0);
        let d = decode(env.as_bytes()).unwrap();
        assert_eq!((d.grace_ms, d.refresh_at_ms), (0, None));
        assert_eq!(d.l1_ttl_ms, None);
        assert!(d.tags.is_empty());
    }

    #[test]
    fn foreign_or_corrupt_bytes_are_rejected_not_panics() {
        for bad in [
            &b""[..],
            b"hello",
            b"\xff\xfe",
            b"{\"v\":2}",
            b"{\"v\":2,\"e\":-1,\"t\":[],\"d\":1}",
            b"{\"v\":2,\"e\":1,\"t\":[\"\"],\"d\":1}",
            b"{\"v\":2,\"e\":1,\"t\":[],\"d\":}",
            b"{\"v\":2,\"e\":1,\"t\":[],\"d\":1",
            b"{\"v\":2,\"e\":1,\"t\":[],\"b\":-5,\"d\":1}",
            b"[1,2,3]",
        ] {
            assert_eq!(
                decode(bad),
                Err(DecodeError::Malformed),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            decode(b"{\"v\":1,\"e\":1,\"t\":[],\"d\":1}"),
            Err(DecodeError::UnknownVersion(1))
        );
    }
}
