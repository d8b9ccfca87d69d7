//! Invalidations that could not reach Redis, kept to be applied once it answers again.
//!
//! Every entry is an invalidation (a failed `set` or `del` becomes a delete of its key, a
//! failed `invalidateTag` an invalidation of its tag): applying one twice, or two of them in
//! either order, leaves Redis the same. So the queue keeps one entry per key or tag: a later
//! failure of the same key or tag only replaces the announcement it will send (the latest
//! operation's), in the place of the first. A Redis outage under load fails thousands of
//! writes of the same hot keys; they cost one replay each once Redis is back.
//!
//! Nothing is ever dropped. When more distinct keys and tags wait than the queue holds, they
//! collapse into one coarser invalidation that covers them all: [`Replay::All`], which deletes
//! every entry of the prefix and empties every process's L1 (FusionCache's `Clear`, used as the
//! safe fallback). Slower to recover from, never stale.

use std::collections::{HashMap, VecDeque};

/// An invalidation for Redis (a `del`, an `invalidateTag`, or a failed write replayed as a
/// delete), with its bus announcement; kept and replayed when Redis could not be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Delete an entry (a failed `set` or `del`): Redis may hold an older value.
    Del {
        /// The key.
        key: String,
        /// Its bus announcement.
        notice: String,
    },
    /// Mark an entry stale (`expire`): it stays only as the fail-safe copy. Kept for replay
    /// as a delete of its key (the queue holds one invalidation per key, and a delete is the
    /// stronger one).
    Expire {
        /// The key.
        key: String,
        /// Its bus announcement.
        notice: String,
    },
    /// Invalidate a tag.
    Tag {
        /// The tag.
        tag: String,
        /// Its bus announcement.
        notice: String,
    },
    /// Invalidate a tag in expire mode: its entries stay only as fail-safe copies. Kept for
    /// replay as a delete-mode invalidation of the tag (the stronger one).
    TagExpire {
        /// The tag.
        tag: String,
        /// Its bus announcement.
        notice: String,
    },
    /// Invalidate every entry of the prefix: what the queue becomes when it overflows.
    All {
        /// Its bus announcement.
        notice: String,
    },
}

/// What a replay invalidates: a key or a tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Key(String),
    Tag(String),
    All,
}

impl Replay {
    fn split(self) -> (Target, String) {
        match self {
            Replay::Del { key, notice } | Replay::Expire { key, notice } => {
                (Target::Key(key), notice)
            }
            Replay::Tag { tag, notice } | Replay::TagExpire { tag, notice } => {
                (Target::Tag(tag), notice)
            }
            Replay::All { notice } => (Target::All, notice),
        }
    }

    fn join(target: Target, notice: String) -> Replay {
        match target {
            Target::Key(key) => Replay::Del { key, notice },
            Target::Tag(tag) => Replay::Tag { tag, notice },
            Target::All => Replay::All { notice },
        }
    }
}

/// The queue: oldest first, one entry per key or tag, at most `capacity` entries (beyond, they
/// all become one [`Replay::All`]).
#[derive(Debug)]
pub struct ReplayQueue {
    order: VecDeque<Target>,
    notices: HashMap<Target, String>,
    capacity: usize,
}

/// What [`ReplayQueue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// A new entry.
    Queued,
    /// The key or tag was already waiting: its announcement was replaced.
    Merged,
    /// The queue was full: everything waiting became one [`Replay::All`].
    Collapsed,
}

impl ReplayQueue {
    /// An empty queue holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        ReplayQueue {
            order: VecDeque::new(),
            notices: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Adds an invalidation, or merges it into the waiting one of the same key or tag (or into
    /// a waiting [`Replay::All`], which covers everything). `all_notice` is the announcement of
    /// the [`Replay::All`] the queue becomes when it is full.
    pub fn push(&mut self, replay: Replay, all_notice: &str) -> Pushed {
        let (target, notice) = replay.split();
        if self.notices.contains_key(&Target::All) {
            return Pushed::Merged;
        }
        if let Some(waiting) = self.notices.get_mut(&target) {
            *waiting = notice;
            return Pushed::Merged;
        }
        if target == Target::All || self.order.len() >= self.capacity {
            self.collapse(if target == Target::All {
                notice
            } else {
                all_notice.to_string()
            });
            return Pushed::Collapsed;
        }
        self.notices.insert(target.clone(), notice);
        self.order.push_back(target);
        Pushed::Queued
    }

    fn collapse(&mut self, notice: String) {
        self.order.clear();
        self.notices.clear();
        self.notices.insert(Target::All, notice);
        self.order.push_back(Target::All);
    }

    /// Forgets the waiting invalidation of `replay`'s key or tag: a later one of the same key
    /// or tag reached Redis, so the older value it was kept for is gone already. (An
    /// invalidation of everything is never forgotten this way.) Returns whether one waited.
    pub fn supersede(&mut self, replay: &Replay) -> bool {
        let target = match replay {
            Replay::Del { key, .. } | Replay::Expire { key, .. } => Target::Key(key.clone()),
            Replay::Tag { tag, .. } | Replay::TagExpire { tag, .. } => Target::Tag(tag.clone()),
            Replay::All { .. } => return false,
        };
        if self.notices.remove(&target).is_none() {
            return false;
        }
        self.order.retain(|t| *t != target);
        true
    }

    /// Takes the oldest invalidation.
    pub fn pop(&mut self) -> Option<Replay> {
        let target = self.order.pop_front()?;
        let notice = self.notices.remove(&target).unwrap_or_default();
        Some(Replay::join(target, notice))
    }

    /// Puts an invalidation that could not be applied back in front. If the same key or tag
    /// failed again meanwhile, that newer entry stays (with its announcement) and this one is
    /// not needed.
    pub fn unpop(&mut self, replay: Replay) {
        let (target, notice) = replay.split();
        if target == Target::All {
            // whatever was queued meanwhile is covered by it, applied later
            self.collapse(notice);
            return;
        }
        // a newer entry of the same key or tag, or a waiting invalidation of everything, covers it
        if self.notices.contains_key(&target) || self.notices.contains_key(&Target::All) {
            return;
        }
        self.notices.insert(target.clone(), notice);
        self.order.push_front(target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn del(key: &str, notice: &str) -> Replay {
        Replay::Del {
            key: key.into(),
            notice: notice.into(),
        }
    }

    fn tag(tag: &str, notice: &str) -> Replay {
        Replay::Tag {
            tag: tag.into(),
            notice: notice.into(),
        }
    }

    #[test]
    fn one_entry_per_key_or_tag_with_the_latest_announcement_in_the_first_place() {
        let mut q = ReplayQueue::new(10);
        assert_eq!(q.push(del("a", "a1"), ""), Pushed::Queued);
        assert_eq!(
            q.push(tag("a", "t1"), "all"),
            Pushed::Queued,
            "a tag is not a key"
        );
        assert_eq!(q.push(del("b", "b1"), "all"), Pushed::Queued);
        assert_eq!(q.push(del("a", "a2"), "all"), Pushed::Merged);
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop(), Some(del("a", "a2")));
        assert_eq!(q.pop(), Some(tag("a", "t1")));
        assert_eq!(q.pop(), Some(del("b", "b1")));
        assert_eq!(q.pop(), None);
        assert!(q.is_empty());
    }

    #[test]
    fn a_key_popped_for_replay_is_queued_again_when_it_fails_again() {
        let mut q = ReplayQueue::new(10);
        q.push(del("a", "a1"), "all");
        let taken = q.pop().unwrap();
        // while it is being replayed, a new write of the key fails: it must wait on its own
        assert_eq!(q.push(del("a", "a2"), "all"), Pushed::Queued);
        // the replay failed too: the newer entry (and its announcement) is kept, once
        q.unpop(taken);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop(), Some(del("a", "a2")));
        // without a newer entry, a failed replay goes back in front
        q.push(del("b", "b1"), "all");
        q.push(del("c", "c1"), "all");
        let b = q.pop().unwrap();
        q.unpop(b);
        assert_eq!(q.pop(), Some(del("b", "b1")));
    }

    #[test]
    fn a_later_invalidation_that_reached_redis_supersedes_the_waiting_one() {
        let mut q = ReplayQueue::new(10);
        q.push(del("a", "a1"), "all");
        q.push(tag("t", "t1"), "all");
        assert!(q.supersede(&del("a", "a2")));
        assert!(!q.supersede(&del("a", "a2")), "nothing waits any more");
        assert!(!q.supersede(&del("t", "")), "a key is not a tag");
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop(), Some(tag("t", "t1")));
    }

    #[test]
    fn beyond_capacity_everything_collapses_into_one_invalidation_of_the_prefix() {
        let mut q = ReplayQueue::new(2);
        q.push(del("a", ""), "all");
        q.push(tag("t", ""), "all");
        assert_eq!(
            q.push(del("a", "x"), "all"),
            Pushed::Merged,
            "a merge needs no room"
        );
        assert_eq!(q.push(del("c", ""), "all"), Pushed::Collapsed);
        assert_eq!(q.len(), 1);
        // while the prefix waits to be invalidated, it covers every further key and tag
        assert_eq!(q.push(tag("u", ""), "all"), Pushed::Merged);
        let all = q.pop().unwrap();
        assert_eq!(
            all,
            Replay::All {
                notice: "all".into()
            }
        );
        assert_eq!(q.pop(), None);
        // pushed while the purge is out: queued on its own
        assert_eq!(q.push(del("d", ""), "all"), Pushed::Queued);
        // a replay that was out when the queue collapsed comes back covered
        let d = q.pop().unwrap();
        q.push(del("e", ""), "all");
        for i in 0..2 {
            q.push(del(&format!("f{i}"), ""), "all");
        }
        assert_eq!(q.len(), 1, "collapsed");
        q.unpop(d);
        assert_eq!(
            q.len(),
            1,
            "covered by the waiting invalidation of everything"
        );
        q.pop();
        // the purge failed: it comes back and covers what was queued meanwhile
        q.unpop(all.clone());
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop(), Some(all));
    }
}
