//! The tag markers this process knows, so a read of a tagged entry rarely needs a second
//! round trip.
//!
//! An entry with tags is valid while every tag's marker exists in Redis and is not newer than
//! the entry's birth (see [`crate::l2`]). A reader judges it with the markers it knows; a tag
//! it does not know is fetched (one `MGET` for a whole batch of reads) and remembered.
//!
//! What is remembered stays true while the bus is subscribed: every invalidation of a tag is
//! announced, and the announcement makes this process forget the tag (see
//! [`TagVersions::forget`]) before it acknowledges it, so a write or invalidation that resolved
//! (acknowledged by every process) is never judged against an older marker. Without the bus
//! (not yet subscribed, or lost) nothing remembered is used, and on a new subscription
//! everything is forgotten. A fetch that began before an invalidation of the tag was recorded
//! is not remembered (it may have read the older marker).
//!
//! A missing marker is never remembered: a later write creates it, and entries written then
//! are valid. Memory is bounded by [`MAX_KNOWN`] tags; beyond it everything is forgotten.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::invalidation::{InvalidationLog, ReadStart};

/// Tags remembered at most; beyond, the map starts again empty.
pub const MAX_KNOWN: usize = 100_000;

/// What the known markers say of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every tag's marker is known and not newer than the entry's birth.
    Valid,
    /// A known marker is newer than the entry's birth: a tag was invalidated after it was
    /// written.
    Invalid,
    /// These tags' markers must be fetched first.
    Unknown(Vec<String>),
}

/// Whether an entry born at `born` is valid under these markers (`None`: missing in Redis).
pub fn valid_under(born: u64, markers: impl IntoIterator<Item = Option<u64>>) -> bool {
    markers.into_iter().all(|m| m.is_some_and(|m| m <= born))
}

/// The markers known to this process.
#[derive(Default)]
pub struct TagVersions {
    known: Mutex<HashMap<String, u64, ahash::RandomState>>,
}

impl TagVersions {
    /// Nothing known.
    pub fn new() -> Self {
        Self::default()
    }

    /// Judges an entry born at `born` carrying `tags`. With `trusted` false (the bus is not
    /// subscribed), nothing remembered is used: every tag is unknown.
    pub fn verdict(&self, tags: &[String], born: u64, trusted: bool) -> Verdict {
        if tags.is_empty() {
            return Verdict::Valid;
        }
        if !trusted {
            return Verdict::Unknown(tags.to_vec());
        }
        let known = self.known.lock();
        let mut unknown = Vec::new();
        for tag in tags {
            match known.get(tag) {
                Some(&m) if m > born => return Verdict::Invalid,
                Some(_) => {}
                None => unknown.push(tag.clone()),
            }
        }
        if unknown.is_empty() {
            Verdict::Valid
        } else {
            Verdict::Unknown(unknown)
        }
    }

    /// Remembers markers fetched by a read that began at `start`, unless the tag was
    /// invalidated since (the fetched marker may be the older one). Missing markers are not
    /// remembered. A marker only moves forward.
    pub fn learn(
        &self,
        log: &InvalidationLog,
        start: ReadStart,
        fetched: &[(String, Option<u64>)],
    ) {
        let mut known = self.known.lock();
        for (tag, marker) in fetched {
            let Some(marker) = *marker else { continue };
            if log.tag_stale(start, tag) {
                continue;
            }
            if known.len() >= MAX_KNOWN && !known.contains_key(tag) {
                *known = HashMap::default();
            }
            let m = known.entry(tag.clone()).or_insert(marker);
            *m = (*m).max(marker);
        }
    }

    /// The marker remembered for `tag`, if any.
    pub fn known(&self, tag: &str) -> Option<u64> {
        self.known.lock().get(tag).copied()
    }

    /// Forgets a tag (it was invalidated: its marker moved).
    pub fn forget(&self, tag: &str) {
        self.known.lock().remove(tag);
    }

    /// Forgets everything (the bus was lost: invalidations may have been missed).
    pub fn clear(&self) {
        *self.known.lock() = HashMap::default();
    }

    /// Tags remembered now.
    pub fn len(&self) -> usize {
        self.known.lock().len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn judges_by_known_markers_and_asks_for_the_rest() {
        let log = InvalidationLog::new();
        let v = TagVersions::new();
        assert_eq!(v.verdict(&[], 5, true), Verdict::Valid);
        assert_eq!(
            v.verdict(&tags(&["a", "b"]), 5, true),
            Verdict::Unknown(tags(&["a", "b"]))
        );
        v.learn(
            &log,
            log.begin(),
            &[("a".into(), Some(5)), ("b".into(), None)],
        );
        assert_eq!(
            v.verdict(&tags(&["a", "b"]), 5, true),
            Verdict::Unknown(tags(&["b"])),
            "a missing marker is not remembered"
        );
        assert_eq!(v.verdict(&tags(&["a"]), 5, true), Verdict::Valid);
        assert_eq!(v.verdict(&tags(&["a"]), 4, true), Verdict::Invalid);
        assert_eq!(
            v.verdict(&tags(&["a"]), 5, false),
            Verdict::Unknown(tags(&["a"])),
            "without the bus nothing remembered is used"
        );
        v.forget("a");
        assert_eq!(
            v.verdict(&tags(&["a"]), 5, true),
            Verdict::Unknown(tags(&["a"]))
        );
    }

    #[test]
    fn a_fetch_that_raced_with_an_invalidation_is_not_remembered() {
        let log = InvalidationLog::new();
        let v = TagVersions::new();
        let start = log.begin();
        log.tag("a"); // the announcement arrived while the MGET was out
        v.learn(&log, start, &[("a".into(), Some(1)), ("b".into(), Some(1))]);
        assert_eq!(
            v.verdict(&tags(&["a"]), 1, true),
            Verdict::Unknown(tags(&["a"]))
        );
        assert_eq!(v.verdict(&tags(&["b"]), 1, true), Verdict::Valid);
    }

    #[test]
    fn markers_only_move_forward_and_missing_means_invalid() {
        let log = InvalidationLog::new();
        let v = TagVersions::new();
        v.learn(&log, log.begin(), &[("a".into(), Some(9))]);
        v.learn(&log, log.begin(), &[("a".into(), Some(3))]);
        assert_eq!(v.verdict(&tags(&["a"]), 8, true), Verdict::Invalid);
        assert!(valid_under(9, [Some(9), Some(1)]));
        assert!(!valid_under(9, [Some(9), None]));
        assert!(!valid_under(9, [Some(10)]));
    }
}
