//! The committed format-version-1 fixture, and stores that cannot be read: truncated,
//! garbage, a newer format version, a bad record. Each is quarantined (moved aside, the
//! store opens empty) or refused (an error naming the file, nothing touched).
//!
//! The fixture `tests/fixtures/store/v<N>/canopy.redb` of the current format version is
//! written by `current_fixture_loads_what_its_generator_committed` when
//! `CANOPY_WRITE_STORE_FIXTURE=1`; it must only be regenerated when the format version
//! changes (as a new `v<N>/`). Older fixtures (`v1/`, subscriptions inside the session
//! records) are never rewritten: they prove that old stores still load and migrate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use canopy_proto::QoS;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::format::unix_ms_to_instant;
use super::tests::{TempDir, assert_same, delivery, message, session};
use super::{DiskStore, FILE_NAME};
use crate::config::OnCorruptStore;
use crate::store::{DeliveryState, MemoryStore, Mutation, Store, StoreError};

fn fixture_path() -> PathBuf {
    versioned_fixture(super::FORMAT_VERSION)
}

fn versioned_fixture(version: u64) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../tests/fixtures/store/v{version}"))
        .join(FILE_NAME)
}

/// What the fixture holds. Instants are fixed wall-clock times (2100-01-01T00:00:00Z
/// and 2001-09-09T01:46:40Z), so the fixture means the same whenever it is read.
fn fixture_batch() -> Vec<Mutation> {
    let future = unix_ms_to_instant(4_102_444_800_000);
    let past = unix_ms_to_instant(1_000_000_000_000);
    let c1: Arc<str> = Arc::from("fixture-client");
    vec![
        Mutation::PutRetained(message("fixture/retained", QoS::AtLeastOnce, Some(future))),
        Mutation::PutRetained(message("fixture/plain", QoS::AtMostOnce, None)),
        Mutation::PutSession(session("fixture-client", Some(future), Some(past))),
        Mutation::PutDelivery(c1.clone(), delivery(1, DeliveryState::AwaitPubRec(4))),
        Mutation::PutDelivery(c1.clone(), delivery(2, DeliveryState::Queued)),
        Mutation::PutIncoming(c1, 12),
    ]
}

/// Copies `bytes` into a new store directory as its store file.
fn store_with(tag: &str, bytes: &[u8]) -> TempDir {
    let dir = TempDir::new(tag);
    std::fs::write(dir.path().join(FILE_NAME), bytes).unwrap();
    dir
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Refuse: an error naming the file and `why`, the bytes untouched, nothing moved.
/// Quarantine: the bytes moved to `quarantine-*/`, and an empty, usable store.
fn assert_refused_then_quarantined(tag: &str, bytes: &[u8], why: &str) {
    let dir = store_with(tag, bytes);
    let file = dir.path().join(FILE_NAME);
    match DiskStore::open(dir.path(), OnCorruptStore::Refuse) {
        Err(StoreError::Corrupt(msg)) => {
            assert!(msg.contains(&file.display().to_string()), "{msg}");
            assert!(msg.contains(why), "{msg} should say {why}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&file).unwrap(),
        bytes,
        "refuse must not touch the file"
    );
    assert_eq!(entries(dir.path()), vec![FILE_NAME.to_string()]);

    let mut store = DiskStore::open(dir.path(), OnCorruptStore::Quarantine).unwrap();
    let snap = store.load().unwrap();
    assert!(snap.retained.is_empty() && snap.sessions.is_empty());
    let names = entries(dir.path());
    assert_eq!(names.len(), 2, "{names:?}");
    let folder = names.iter().find(|n| n.starts_with("quarantine-")).unwrap();
    let moved = dir.path().join(folder).join(FILE_NAME);
    assert_eq!(
        std::fs::read(moved).unwrap(),
        bytes,
        "quarantine keeps the bytes"
    );
    store
        .commit(&mut vec![Mutation::PutRetained(message(
            "ok",
            QoS::AtMostOnce,
            None,
        ))])
        .unwrap();
    drop(store);
    let snap = DiskStore::open(dir.path(), OnCorruptStore::Refuse)
        .unwrap()
        .load()
        .unwrap();
    assert_eq!(snap.retained.len(), 1, "the fresh store works");
}

#[test]
fn current_fixture_loads_what_its_generator_committed() {
    if std::env::var_os("CANOPY_WRITE_STORE_FIXTURE").is_some() {
        let dir = TempDir::new("fixture-gen");
        DiskStore::open(dir.path(), OnCorruptStore::Refuse)
            .unwrap()
            .commit(&mut fixture_batch())
            .unwrap();
        {
            let mut db = Database::open(dir.path().join(FILE_NAME)).unwrap();
            while db.compact().unwrap() {}
        }
        std::fs::create_dir_all(fixture_path().parent().unwrap()).unwrap();
        std::fs::copy(dir.path().join(FILE_NAME), fixture_path()).unwrap();
    }
    let dir = store_with("fixture", &std::fs::read(fixture_path()).unwrap());
    let loaded = DiskStore::open(dir.path(), OnCorruptStore::Refuse)
        .unwrap()
        .load()
        .unwrap();
    let mut mem = MemoryStore::new();
    mem.commit(&mut fixture_batch()).unwrap();
    assert_same(loaded, mem.load().unwrap(), Duration::from_millis(50));
}

fn format_version(path: &Path) -> u64 {
    let db = Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(super::META).unwrap();
    meta.get("format_version").unwrap().unwrap().value()
}

#[test]
fn a_v1_store_loads_and_is_migrated_to_one_row_per_subscription() {
    let dir = store_with("v1", &std::fs::read(versioned_fixture(1)).unwrap());
    let file = dir.path().join(FILE_NAME);
    assert_eq!(format_version(&file), 1);
    let mut mem = MemoryStore::new();
    mem.commit(&mut fixture_batch()).unwrap();
    let loaded = DiskStore::open(dir.path(), OnCorruptStore::Refuse)
        .unwrap()
        .load()
        .unwrap();
    assert_same(loaded, mem.load().unwrap(), Duration::from_millis(50));
    assert_eq!(format_version(&file), super::FORMAT_VERSION);
    {
        let db = Database::open(&file).unwrap();
        let txn = db.begin_read().unwrap();
        let subs = txn.open_table(super::SUBSCRIPTIONS).unwrap();
        let filters: Vec<String> = subs
            .iter()
            .unwrap()
            .map(|r| r.unwrap().0.value().1.to_owned())
            .collect();
        assert_eq!(filters, vec!["$share/g/#".to_string(), "a/+/c".to_string()]);
        let sessions = txn.open_table(super::SESSIONS).unwrap();
        let rec = sessions.get("fixture-client").unwrap().unwrap();
        let rec = super::format::decode_session("fixture-client", rec.value()).unwrap();
        assert!(
            rec.subscriptions.is_empty(),
            "the record keeps only its own fields"
        );
    }
    // Reopened (now version 2) it loads the same, and takes per-subscription changes.
    let mut store = DiskStore::open(dir.path(), OnCorruptStore::Refuse).unwrap();
    assert_same(
        store.load().unwrap(),
        mem.load().unwrap(),
        Duration::from_millis(50),
    );
    let change = || {
        vec![Mutation::DeleteSubscription(
            Arc::from("fixture-client"),
            Arc::from("a/+/c"),
        )]
    };
    store.commit(&mut change()).unwrap();
    mem.commit(&mut change()).unwrap();
    drop(store);
    let loaded = DiskStore::open(dir.path(), OnCorruptStore::Refuse)
        .unwrap()
        .load()
        .unwrap();
    assert_same(loaded, mem.load().unwrap(), Duration::from_millis(50));
}

#[test]
fn a_truncated_store_is_refused_or_quarantined() {
    let bytes = std::fs::read(fixture_path()).unwrap();
    assert_refused_then_quarantined("truncated", &bytes[..bytes.len() / 2], "");
}

#[test]
fn a_store_cut_after_its_header_is_refused_or_quarantined() {
    let bytes = std::fs::read(fixture_path()).unwrap();
    assert_refused_then_quarantined("cut", &bytes[..4096.min(bytes.len())], "");
}

#[test]
fn a_garbage_file_is_refused_or_quarantined() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    assert_refused_then_quarantined("garbage", &bytes, "");
}

/// A valid store file, changed with redb directly by `edit`.
fn edited_store(tag: &str, edit: impl FnOnce(&Database)) -> Vec<u8> {
    let dir = TempDir::new(tag);
    DiskStore::open(dir.path(), OnCorruptStore::Refuse)
        .unwrap()
        .commit(&mut fixture_batch())
        .unwrap();
    let path = dir.path().join(FILE_NAME);
    {
        let db = Database::open(&path).unwrap();
        edit(&db);
    }
    std::fs::read(path).unwrap()
}

fn put<K: redb::Key + 'static, V: redb::Value + 'static>(
    db: &Database,
    table: TableDefinition<K, V>,
    k: K::SelfType<'_>,
    v: V::SelfType<'_>,
) {
    let txn = db.begin_write().unwrap();
    txn.open_table(table).unwrap().insert(k, v).unwrap();
    txn.commit().unwrap();
}

#[test]
fn a_newer_format_version_is_refused_or_quarantined() {
    let bytes = edited_store("v999", |db| put(db, super::META, "format_version", 999));
    assert_refused_then_quarantined("v999", &bytes, "format_version 999 is newer");
}

#[test]
fn a_store_without_a_version_is_refused_or_quarantined() {
    let bytes = edited_store("nometa", |db| {
        let txn = db.begin_write().unwrap();
        txn.delete_table(super::META).unwrap();
        txn.commit().unwrap();
    });
    assert_refused_then_quarantined("nometa", &bytes, "no meta table");
}

#[test]
fn an_undecodable_record_is_refused_or_quarantined_naming_its_table_and_key() {
    let bytes = edited_store("badrec", |db| {
        put(
            db,
            super::SESSIONS,
            "fixture-client",
            [1u8, 0, 0].as_slice(),
        )
    });
    assert_refused_then_quarantined("badrec", &bytes, "table sessions, key \"fixture-client\"");
}

#[test]
fn a_record_from_a_newer_record_version_is_refused_or_quarantined() {
    let bytes = edited_store("newrec", |db| {
        put(
            db,
            super::DELIVERIES,
            ("fixture-client", 2),
            [9u8, 1, 2].as_slice(),
        )
    });
    assert_refused_then_quarantined("newrec", &bytes, "record version 9 is newer");
}
