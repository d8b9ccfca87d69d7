//! Invalidations that could not reach Redis, kept to be applied once it answers again.
//!
//! Every entry is an invalidation (a failed `set` or `del` becomes a delete of its key, a
//! failed `invalidateTag` an invalidation of its tag): applying one twice, or two of them in
//! either order, leaves Redis the same. So the queue keeps one entry per key or tag: a later
//! failure of the same key or tag only replaces the announcement it will send (the latest
//! operation's), in the place of the first. A Redis outage under load fails thousands of
//! writes of the same hot keys; they cost one replay each once Redis is back.

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
    /// Invalidate a tag.
    Tag {
        /// The tag.
        tag: String,
        /// Its bus announcement.
        notice: String,
    },
}

/// What a replay invalidates: a key or a tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Key(String),
    Tag(String),
}

impl Replay {
    fn split(self) -> (Target, String) {
        match self {
            Replay::Del { key, notice } => (Target::Key(key), notice),
            Replay::Tag { tag, notice } => (Target::Tag(tag), notice),
        }
    }

    fn join(target: Target, notice: String) -> Replay {
        match target {
            Target::Key(key) => Replay::Del { key, notice },
            Target::Tag(tag) => Replay::Tag { tag, notice },
        }
    }
}

/// The queue: oldest first, one entry per key or tag, at most `capacity` entries (beyond, the
/// oldest is dropped).
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
    /// A new entry, and the oldest was dropped to make room.
    DroppedOldest,
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

    /// Adds an invalidation, or merges it into the waiting one of the same key or tag.
    pub fn push(&mut self, replay: Replay) -> Pushed {
        let (target, notice) = replay.split();
        if let Some(waiting) = self.notices.get_mut(&target) {
            *waiting = notice;
            return Pushed::Merged;
        }
        let mut pushed = Pushed::Queued;
        if self.order.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.notices.remove(&oldest);
                pushed = Pushed::DroppedOldest;
            }
        }
        self.notices.insert(target.clone(), notice);
        self.order.push_back(target);
        pushed
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
        if self.notices.contains_key(&target) {
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
        assert_eq!(q.push(del("a", "a1")), Pushed::Queued);
        assert_eq!(q.push(tag("a", "t1")), Pushed::Queued, "a tag is not a key");
        assert_eq!(q.push(del("b", "b1")), Pushed::Queued);
        assert_eq!(q.push(del("a", "a2")), Pushed::Merged);
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
        q.push(del("a", "a1"));
        let taken = q.pop().unwrap();
        // while it is being replayed, a new write of the key fails: it must wait on its own
        assert_eq!(q.push(del("a", "a2")), Pushed::Queued);
        // the replay failed too: the newer entry (and its announcement) is kept, once
        q.unpop(taken);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop(), Some(del("a", "a2")));
        // without a newer entry, a failed replay goes back in front
        q.push(del("b", "b1"));
        q.push(del("c", "c1"));
        let b = q.pop().unwrap();
        q.unpop(b);
        assert_eq!(q.pop(), Some(del("b", "b1")));
    }

    #[test]
    fn beyond_capacity_the_oldest_is_dropped() {
        let mut q = ReplayQueue::new(2);
        q.push(del("a", ""));
        q.push(del("b", ""));
        assert_eq!(
            q.push(del("b", "x")),
            Pushed::Merged,
            "a merge needs no room"
        );
        assert_eq!(q.push(del("c", "")), Pushed::DroppedOldest);
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(), Some(del("b", "x")));
        assert_eq!(q.pop(), Some(del("c", "")));
        // the dropped key can be queued again
        assert_eq!(q.push(del("a", "")), Pushed::Queued);
    }
}
