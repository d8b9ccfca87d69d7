//! Judging tagged entries read from Redis (runs on the I/O thread, inside the read tasks).
//!
//! An entry with tags is valid while every tag's marker exists and is not newer than the
//! entry's birth (see [`crate::l2`]). The markers this process knows come from
//! [`crate::tag_versions`] (trusted only while the bus is subscribed); the others are fetched
//! in one `MGET` for the whole batch. When Redis cannot answer that, the entries count as
//! invalid: a miss, never a stale read.

use std::collections::{HashMap, HashSet};

use super::shared::Shared;
use crate::l2::L2;
use crate::tag_versions::{valid_under, Verdict};

/// Whether each entry (its birth and tags) is valid.
pub(crate) async fn judge(
    shared: &Shared,
    l2: &L2,
    trusted: bool,
    entries: &[(u64, &[String])],
) -> Vec<bool> {
    let versions = &shared.tag_versions;
    let mut valid = vec![true; entries.len()];
    let mut pending = Vec::new();
    let mut unknown = Vec::new();
    let mut asked = HashSet::new();
    for (i, (born, tags)) in entries.iter().enumerate() {
        match versions.verdict(tags, *born, trusted) {
            Verdict::Valid => {}
            Verdict::Invalid => valid[i] = false,
            Verdict::Unknown(tags) => {
                pending.push(i);
                for tag in tags {
                    if asked.insert(tag.clone()) {
                        unknown.push(tag);
                    }
                }
            }
        }
    }
    if pending.is_empty() {
        return valid;
    }
    let start = shared.log.begin();
    let markers = match l2.markers(&unknown).await {
        Ok(markers) => markers,
        Err(_) => {
            // counted by L2; unknown markers: those entries are misses
            for i in pending {
                valid[i] = false;
            }
            return valid;
        }
    };
    let fetched: Vec<(String, Option<u64>)> = unknown.into_iter().zip(markers).collect();
    versions.learn(&shared.log, start, &fetched);
    let by_tag: HashMap<&str, Option<u64>> =
        fetched.iter().map(|(t, m)| (t.as_str(), *m)).collect();
    for i in pending {
        let (born, tags) = entries[i];
        valid[i] = valid_under(
            born,
            tags.iter().map(|t| match by_tag.get(t.as_str()) {
                Some(m) => *m,
                None => versions.known(t),
            }),
        );
    }
    valid
}
