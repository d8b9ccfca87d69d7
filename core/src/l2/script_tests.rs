//! The Lua scripts against a real Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`),
//! through [`L2`] itself, so the scripts run exactly as the cache composes them. Each test
//! uses a prefix of its own and deletes its keys afterwards.

use std::sync::Arc;
use std::time::Duration;

use super::{Discard, LoadedWrite, ReadOrLock, L2};
use crate::codec;
use crate::config::{Config, Options};
use crate::connection::Connector;
use crate::keys::Keyspace;

/// An L2 on the test Redis with a fresh prefix, and a plain connection to look at the keys.
async fn setup(name: &str) -> (Arc<L2>, Keyspace, redis::aio::MultiplexedConnection) {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut id = [0u8; 6];
    getrandom::fill(&mut id).expect("randomness");
    let prefix = format!(
        "rs-{name}-{}",
        id.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let config = Config::from_options(Options {
        redis_url: Some(url.clone()),
        prefix: Some(prefix.clone()),
        ..Options::default()
    })
    .expect("valid options");
    let l2_config = config.l2.expect("an L2 config");
    let keys = Keyspace::new(&prefix);
    let l2 = L2::new(
        &l2_config,
        Connector::new(&l2_config),
        keys.clone(),
        "all".into(),
    )
    .expect("an L2");
    let admin = redis::Client::open(url)
        .expect("a URL")
        .get_multiplexed_async_connection()
        .await
        .expect("the test Redis answers (REDIS_URL or 127.0.0.1:6379)");
    (l2, keys, admin)
}

/// Deletes every key of the test's prefix.
async fn cleanup(keys: &Keyspace, admin: &mut redis::aio::MultiplexedConnection) {
    let found: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", keys.base()))
        .query_async(admin)
        .await
        .unwrap_or_default();
    if !found.is_empty() {
        let _: redis::RedisResult<u64> = redis::cmd("DEL").arg(found).query_async(admin).await;
    }
}

async fn get(admin: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query_async(admin).await.unwrap()
}

fn envelope(value: &str, tags: &[&str]) -> codec::Encoded {
    graced(value, tags, 0)
}

/// An envelope fresh for a minute, kept `grace_ms` past that.
fn graced(value: &str, tags: &[&str], grace_ms: u64) -> codec::Encoded {
    let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    let life = codec::Lifetime {
        expires_at_ms: crate::clock::now_ms() + 60_000,
        grace_ms,
        refresh_at_ms: None,
    };
    codec::encode(value, life, None, 7, &tags)
}

const TTL: Duration = Duration::from_secs(60);
const LOCK_TTL: Duration = Duration::from_secs(5);

#[tokio::test]
async fn read_or_lock_reads_takes_the_lock_or_finds_it_busy_and_discards_dead_entries() {
    let (l2, keys, mut admin) = setup("rol").await;
    // absent: the lock is ours, with the clock (started at the wall clock) as the birth
    let ReadOrLock::Acquired(clock) = l2
        .read_or_lock("k", "tok1", LOCK_TTL, None, false)
        .await
        .unwrap()
    else {
        panic!("an absent key's lock was not taken")
    };
    assert!(
        clock >= 1_700_000_000_000_000,
        "the clock starts at the wall clock in µs: {clock}"
    );
    assert_eq!(
        get(&mut admin, &keys.lock("k")).await.as_deref(),
        Some("tok1")
    );
    // held by another owner: busy, nothing changed
    assert!(matches!(
        l2.read_or_lock("k", "tok2", LOCK_TTL, None, false)
            .await
            .unwrap(),
        ReadOrLock::Busy(_)
    ));
    assert_eq!(
        get(&mut admin, &keys.lock("k")).await.as_deref(),
        Some("tok1")
    );
    // the loader's value, stored under the unchanged lock, releases it
    let stored = l2
        .set(
            "k",
            &envelope("1", &[]),
            TTL,
            &[],
            "n",
            Some(LoadedWrite {
                born: clock,
                lock_token: "tok1",
            }),
        )
        .await
        .unwrap();
    assert!(stored.is_some());
    assert_eq!(get(&mut admin, &keys.lock("k")).await, None);
    let ReadOrLock::Value(v) = l2
        .read_or_lock("k", "tok3", LOCK_TTL, None, false)
        .await
        .unwrap()
    else {
        panic!("a stored value was not read")
    };
    assert!(String::from_utf8(v).unwrap().ends_with("\"d\":1}"));
    // an entry found unusable is deleted and counts as absent (the lock is taken)
    assert!(matches!(
        l2.read_or_lock("k", "tok4", LOCK_TTL, Some(Discard::Write(7)), false)
            .await
            .unwrap(),
        ReadOrLock::Acquired(_)
    ));
    assert_eq!(get(&mut admin, &keys.entry("k")).await, None);
    // a different write's marker does not match: the entry stays
    l2.release_lock("k", "tok4", "").await.unwrap();
    l2.set("k", &envelope("2", &[]), TTL, &[], "n", None)
        .await
        .unwrap();
    assert!(matches!(
        l2.read_or_lock("k", "tok5", LOCK_TTL, Some(Discard::Write(8)), false)
            .await
            .unwrap(),
        ReadOrLock::Value(_)
    ));
    cleanup(&keys, &mut admin).await;
}

#[tokio::test]
async fn a_write_or_delete_during_a_load_refuses_the_loaders_value() {
    let (l2, keys, mut admin) = setup("refuse").await;
    for interfere in ["set", "del"] {
        let key = format!("k-{interfere}");
        let ReadOrLock::Acquired(born) = l2
            .read_or_lock(&key, "owner", LOCK_TTL, None, false)
            .await
            .unwrap()
        else {
            panic!("lock not taken")
        };
        match interfere {
            "set" => l2
                .set(&key, &envelope("\"new\"", &[]), TTL, &[], "n", None)
                .await
                .map(|_| ())
                .unwrap(),
            _ => l2.del(&key, "n").await.map(|_| ()).unwrap(),
        }
        // the lock is marked, still the owner's: extend and release work, nobody else takes it
        assert_eq!(
            get(&mut admin, &keys.lock(&key)).await.as_deref(),
            Some("!owner")
        );
        assert!(l2.extend_lock(&key, "owner", LOCK_TTL).await.unwrap());
        let refused = l2
            .set(
                &key,
                &envelope("\"old\"", &[]),
                TTL,
                &[],
                "n",
                Some(LoadedWrite {
                    born,
                    lock_token: "owner",
                }),
            )
            .await
            .unwrap();
        assert_eq!(
            refused, None,
            "{interfere}: the loader's older value was stored"
        );
        let now = get(&mut admin, &keys.entry(&key)).await;
        match interfere {
            "set" => assert!(now.unwrap().ends_with("\"d\":\"new\"}")),
            _ => assert_eq!(now, None),
        }
        assert!(l2.release_lock(&key, "owner", "").await.unwrap());
        assert!(
            !l2.release_lock(&key, "owner", "").await.unwrap(),
            "released twice"
        );
    }
    cleanup(&keys, &mut admin).await;
}

#[tokio::test]
async fn a_tag_invalidated_after_the_lookup_refuses_the_value_and_a_lost_marker_is_a_miss() {
    let (l2, keys, mut admin) = setup("tags").await;
    // a caller's tagged write creates the marker, born not before it
    l2.set("a", &envelope("1", &["t"]), TTL, &["t".into()], "n", None)
        .await
        .unwrap();
    let marker = l2.markers(&["t".into()]).await.unwrap()[0].expect("the marker exists");
    let stored = codec::decode(get(&mut admin, &keys.entry("a")).await.unwrap().as_bytes())
        .unwrap()
        .born;
    assert!(
        stored >= marker,
        "born {stored} before its tag's marker {marker}"
    );
    // a lookup, then an invalidation of the tag: the loader's value is refused
    let ReadOrLock::Acquired(born) = l2
        .read_or_lock("b", "owner", LOCK_TTL, None, false)
        .await
        .unwrap()
    else {
        panic!("lock not taken")
    };
    l2.invalidate_tag("t", "n").await.unwrap();
    let newer = l2.markers(&["t".into()]).await.unwrap()[0].unwrap();
    assert!(
        newer > marker && newer > born,
        "the invalidation did not advance the marker past the birth"
    );
    let refused = l2
        .set(
            "b",
            &envelope("2", &["t"]),
            TTL,
            &["t".into()],
            "n",
            Some(LoadedWrite {
                born,
                lock_token: "owner",
            }),
        )
        .await
        .unwrap();
    assert_eq!(refused, None);
    // the marker keeps at least the entry's TTL
    let pttl: i64 = redis::cmd("PTTL")
        .arg(keys.tag_marker("t"))
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(
        pttl > 50_000,
        "marker TTL {pttl} ms shorter than the entry's"
    );
    // a lost marker: the next write re-creates it above every earlier birth
    let _: u64 = redis::cmd("DEL")
        .arg(keys.tag_marker("t"))
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(l2.markers(&["t".into()]).await.unwrap(), vec![None]);
    l2.set("c", &envelope("3", &["t"]), TTL, &["t".into()], "n", None)
        .await
        .unwrap();
    let remade = l2.markers(&["t".into()]).await.unwrap()[0].unwrap();
    assert!(
        remade > stored,
        "a re-made marker {remade} lets the old entry (born {stored}) live again"
    );
    cleanup(&keys, &mut admin).await;
}

#[tokio::test]
async fn expire_keeps_a_graced_entry_marked_stale_and_deletes_one_without_grace() {
    let (l2, keys, mut admin) = setup("expire").await;
    l2.set(
        "g",
        &graced("{\"a\":1}", &["t"], 600_000),
        TTL,
        &["t".into()],
        "n",
        None,
    )
    .await
    .unwrap();
    l2.set("p", &envelope("2", &[]), TTL, &[], "n", None)
        .await
        .unwrap();
    let before = crate::clock::now_ms();
    l2.expire("g", "n").await.unwrap();
    l2.expire("p", "n").await.unwrap();
    // the graced entry stays, its fresh expiry moved to now, everything else as it was
    let kept = get(&mut admin, &keys.entry("g"))
        .await
        .expect("the graced entry stays");
    let decoded = codec::decode(kept.as_bytes()).unwrap();
    assert!(decoded.expires_at_ms >= before && decoded.expires_at_ms <= crate::clock::now_ms());
    assert_eq!(decoded.grace_ms, 600_000);
    assert_eq!(decoded.value_json, "{\"a\":1}");
    assert_eq!(decoded.tags, vec!["t".to_string()]);
    let pttl: i64 = redis::cmd("PTTL")
        .arg(keys.entry("g"))
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(pttl > 50_000, "its TTL is kept: {pttl}");
    // without a grace: deleted, as by del
    assert_eq!(get(&mut admin, &keys.entry("p")).await, None);
    // an expire of an entry already stale never makes it fresher
    l2.expire("g", "n").await.unwrap();
    let again = get(&mut admin, &keys.entry("g")).await.unwrap();
    assert!(codec::decode(again.as_bytes()).unwrap().expires_at_ms <= crate::clock::now_ms());
    cleanup(&keys, &mut admin).await;
}

#[tokio::test]
async fn take_lock_takes_a_free_lock_with_the_clock_and_reports_a_held_one_or_a_newer_entry() {
    let (l2, keys, mut admin) = setup("take").await;
    l2.set("k", &envelope("1", &[]), TTL, &[], "n", None)
        .await
        .unwrap();
    let ReadOrLock::Acquired(clock) = l2.take_lock("k", "tok1", LOCK_TTL, 7, false).await.unwrap()
    else {
        panic!("a free lock was not taken")
    };
    assert!(clock >= 1_700_000_000_000_000);
    assert!(matches!(
        l2.take_lock("k", "tok2", LOCK_TTL, 7, false).await.unwrap(),
        ReadOrLock::Busy(c) if c == clock
    ));
    assert_eq!(
        get(&mut admin, &keys.lock("k")).await.as_deref(),
        Some("tok1")
    );
    // the entry read was replaced (write 8 is not write 7): its value, not the lock
    l2.release_lock("k", "tok1", "").await.unwrap();
    assert!(matches!(
        l2.take_lock("k", "tok3", LOCK_TTL, 8, false).await.unwrap(),
        ReadOrLock::Value(_)
    ));
    assert_eq!(get(&mut admin, &keys.lock("k")).await, None);
    // gone meanwhile: the lock is taken (the load replaces nothing)
    l2.del("k", "n").await.unwrap();
    assert!(matches!(
        l2.take_lock("k", "tok4", LOCK_TTL, 8, false).await.unwrap(),
        ReadOrLock::Acquired(_)
    ));
    cleanup(&keys, &mut admin).await;
}
