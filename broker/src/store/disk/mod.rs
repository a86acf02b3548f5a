//! The disk store (`durability = "sync"` and `"batched"`): the durable image in one redb
//! file, `data_dir/canopy.redb`.
//!
//! Owns the table layout, the format version check, and what happens to a store that
//! cannot be read (quarantine or refuse, see `docs/persistence.md`). Record bytes are
//! [`format`]'s business. It behaves exactly like [`super::MemoryStore`], only durably:
//! each `commit` is one write transaction, fsynced before it returns. It never panics on
//! a damaged file (redb checks every page's checksum on open), never deletes user data
//! (a bad store is moved aside, not removed), and never calls back into the router.

mod format;
mod quarantine;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_corrupt;

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError};

use super::{Mutation, Snapshot, Store, StoreError, StoredSession};
use crate::config::OnCorruptStore;

/// Version of the table layout, kept in the `meta` table. A store with a higher version
/// is unreadable by this build and treated as corrupt. Version 2 keeps subscriptions in
/// their own table, one row per (client id, filter); a version 1 store (subscriptions
/// inside the session record) is migrated when it is opened.
pub const FORMAT_VERSION: u64 = 2;

/// The store's file inside `data_dir`.
pub const FILE_NAME: &str = "canopy.redb";

/// Most memory redb may use for its page cache.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const DELIVERIES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("deliveries");
const INCOMING: TableDefinition<(&str, u16), ()> = TableDefinition::new("incoming");
const SUBSCRIPTIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("subscriptions");

/// Key of the format version in the `meta` table.
const FORMAT_KEY: &str = "format_version";

/// The durable store on disk.
pub struct DiskStore {
    db: Database,
    path: PathBuf,
    /// What `open` read while checking the store, handed out by the first `load`.
    opened: Option<Snapshot>,
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Why opening failed: the file is unreadable (quarantine or refuse) or the system
/// failed (always an error, never a reason to move anything).
enum OpenError {
    Corrupt(String),
    Io(StoreError),
}

fn io_err(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Sorts a redb error at open time: data problems are corruption, the rest is IO.
fn classify(path: &Path, e: impl Into<redb::Error>) -> OpenError {
    use std::io::ErrorKind;
    match e.into() {
        redb::Error::Io(e)
            if matches!(e.kind(), ErrorKind::InvalidData | ErrorKind::UnexpectedEof) =>
        {
            OpenError::Corrupt(format!("not a readable redb database ({e})"))
        }
        redb::Error::Io(e) => OpenError::Io(io_err(path, e)),
        e @ (redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch) => {
            OpenError::Io(io_err(
                path,
                std::io::Error::new(ErrorKind::ResourceBusy, e.to_string()),
            ))
        }
        e => OpenError::Corrupt(e.to_string()),
    }
}

/// Turns a redb error during a commit or a later load into a store error.
fn runtime_err(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Io(e) => io_err(path, e),
        e => StoreError::Corrupt(format!("{}: {e}", path.display())),
    }
}

impl DiskStore {
    /// Opens (creating if needed) the store under `dir` (e.g. `./canopy-data`). A store
    /// that cannot be read (truncated, corrupt, written by a newer format version) is,
    /// with [`OnCorruptStore::Quarantine`], moved aside to `dir/quarantine-<unix time>/`
    /// with an error log line naming both paths, and a fresh empty store is created; with
    /// [`OnCorruptStore::Refuse`], this returns [`StoreError::Corrupt`] naming the file
    /// and what is wrong, and touches nothing. IO failures (permissions, a store already
    /// open in another process) are returned as [`StoreError::Io`] and move nothing.
    pub fn open(dir: &Path, on_corrupt: OnCorruptStore) -> Result<DiskStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let path = dir.join(FILE_NAME);
        let why = match Self::try_open(&path) {
            Ok(store) => return Ok(store),
            Err(OpenError::Io(e)) => return Err(e),
            Err(OpenError::Corrupt(why)) => why,
        };
        if on_corrupt == OnCorruptStore::Refuse {
            return Err(StoreError::Corrupt(format!("{}: {why}", path.display())));
        }
        let folder = quarantine::move_aside(dir, &[FILE_NAME])?;
        tracing::error!(
            store = %path.display(),
            moved_to = %folder.display(),
            reason = %why,
            "the store cannot be read: moved it aside and starting with an empty store"
        );
        match Self::try_open(&path) {
            Ok(store) => Ok(store),
            Err(OpenError::Io(e)) => Err(e),
            Err(OpenError::Corrupt(why)) => Err(StoreError::Corrupt(format!(
                "{} (new store): {why}",
                path.display()
            ))),
        }
    }

    /// Opens or creates the file, checks its version and decodes everything in it. The
    /// checks run on an in-memory copy (redb's integrity check commits, and a refused
    /// store must stay byte for byte as it was); the file itself is opened only once its
    /// copy has passed.
    fn try_open(path: &Path) -> Result<DiskStore, OpenError> {
        let (opened, version) = match read_unshared(path)? {
            Some(bytes) => probe(bytes)?,
            None => (Snapshot::default(), FORMAT_VERSION),
        };
        let fresh = !std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| classify(path, e))?;
        if fresh {
            Self::initialise(&db).map_err(|e| classify(path, e))?;
        } else if version < FORMAT_VERSION {
            Self::migrate(&db).map_err(|e| classify(path, e))?;
            tracing::info!(store = %path.display(), from = version, to = FORMAT_VERSION, "store format migrated");
        }
        Ok(DiskStore {
            db,
            path: path.to_path_buf(),
            opened: Some(opened),
        })
    }

    /// Writes the version and creates every table, in one durable transaction.
    fn initialise(db: &Database) -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        {
            txn.open_table(META)?.insert(FORMAT_KEY, FORMAT_VERSION)?;
            txn.open_table(RETAINED)?;
            txn.open_table(SESSIONS)?;
            txn.open_table(DELIVERIES)?;
            txn.open_table(INCOMING)?;
            txn.open_table(SUBSCRIPTIONS)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Migrates a version 1 store (already checked and decoded by `probe`) in one
    /// durable transaction: each session's subscriptions move out of its record into
    /// the `subscriptions` table, and the version becomes [`FORMAT_VERSION`].
    fn migrate(db: &Database) -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        {
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut subs = txn.open_table(SUBSCRIPTIONS)?;
            let mut records = Vec::new();
            for row in sessions.iter()? {
                let (k, v) = row?;
                let id = k.value().to_owned();
                // `probe` decoded every record already; one that fails now is left as is
                // and reported by the next load.
                if let Ok(rec) = format::decode_session(&id, v.value()) {
                    records.push(rec);
                }
            }
            for mut rec in records {
                for sub in std::mem::take(&mut rec.subscriptions) {
                    if let Ok(v) = format::encode_subscription(&sub) {
                        subs.insert((&*rec.client_id, sub.filter.as_str()), v.as_slice())?;
                    }
                }
                if let Ok(v) = format::encode_session(&rec) {
                    sessions.insert(&*rec.client_id, v.as_slice())?;
                }
            }
            txn.open_table(META)?.insert(FORMAT_KEY, FORMAT_VERSION)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Applies `batch` in one write transaction.
    fn apply(&self, batch: &mut Vec<Mutation>) -> Result<(), StoreError> {
        let path = &self.path;
        let enc = |what: &str, e: format::FormatError| {
            StoreError::Corrupt(format!("{}: cannot encode {what}: {e}", path.display()))
        };
        let re = |e: redb::StorageError| runtime_err(path, e);
        let txn = self.db.begin_write().map_err(|e| runtime_err(path, e))?;
        {
            let open = |e: TableError| runtime_err(path, e);
            let mut retained = txn.open_table(RETAINED).map_err(open)?;
            let mut sessions = txn.open_table(SESSIONS).map_err(open)?;
            let mut deliveries = txn.open_table(DELIVERIES).map_err(open)?;
            let mut incoming = txn.open_table(INCOMING).map_err(open)?;
            let mut subs = txn.open_table(SUBSCRIPTIONS).map_err(open)?;
            for m in batch.drain(..) {
                match m {
                    Mutation::PutRetained(msg) => {
                        let v = format::encode_message(&msg).map_err(|e| enc("retained", e))?;
                        retained
                            .insert(msg.topic.as_str(), v.as_slice())
                            .map_err(re)?;
                    }
                    Mutation::DeleteRetained(topic) => {
                        retained.remove(topic.as_str()).map_err(re)?;
                    }
                    Mutation::PutSession(mut rec) => {
                        let id = rec.client_id.clone();
                        for sub in std::mem::take(&mut rec.subscriptions) {
                            let v = format::encode_subscription(&sub)
                                .map_err(|e| enc("subscription", e))?;
                            subs.insert((&*id, sub.filter.as_str()), v.as_slice())
                                .map_err(re)?;
                        }
                        let v = format::encode_session(&rec).map_err(|e| enc("session", e))?;
                        sessions.insert(&*id, v.as_slice()).map_err(re)?;
                    }
                    Mutation::PutSubscription(id, sub) => {
                        let v = format::encode_subscription(&sub)
                            .map_err(|e| enc("subscription", e))?;
                        subs.insert((&*id, sub.filter.as_str()), v.as_slice())
                            .map_err(re)?;
                    }
                    Mutation::DeleteSubscription(id, filter) => {
                        subs.remove((&*id, &*filter)).map_err(re)?;
                    }
                    Mutation::DeleteSession(id) => {
                        sessions.remove(&*id).map_err(re)?;
                        let mut filters = Vec::new();
                        for row in subs.range((&*id, "")..).map_err(re)? {
                            let (k, _) = row.map_err(re)?;
                            let (c, f) = k.value();
                            if c != &*id {
                                break;
                            }
                            filters.push(f.to_owned());
                        }
                        for f in filters {
                            subs.remove((&*id, f.as_str())).map_err(re)?;
                        }
                        deliveries
                            .retain_in((&*id, 0u64)..=(&*id, u64::MAX), |_, _| false)
                            .map_err(re)?;
                        incoming
                            .retain_in((&*id, 0u16)..=(&*id, u16::MAX), |_, _| false)
                            .map_err(re)?;
                    }
                    Mutation::PutDelivery(id, d) => {
                        let v = format::encode_delivery(&d).map_err(|e| enc("delivery", e))?;
                        deliveries.insert((&*id, d.seq), v.as_slice()).map_err(re)?;
                    }
                    Mutation::DeleteDelivery(id, seq) => {
                        deliveries.remove((&*id, seq)).map_err(re)?;
                    }
                    Mutation::PutIncoming(id, pkid) => {
                        incoming.insert((&*id, pkid), ()).map_err(re)?;
                    }
                    Mutation::DeleteIncoming(id, pkid) => {
                        incoming.remove((&*id, pkid)).map_err(re)?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| runtime_err(path, e))
    }
}

impl Store for DiskStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        if let Some(s) = self.opened.take() {
            return Ok(s);
        }
        read_all(&self.db).map_err(|e| match e {
            ReadError::Redb(e) => runtime_err(&self.path, e),
            ReadError::Record(why) => {
                StoreError::Corrupt(format!("{}: {why}", self.path.display()))
            }
        })
    }

    /// One write transaction with redb's default durability (`Immediate`: fsynced before
    /// `commit` returns). On error nothing of the batch is kept, and the batch is emptied.
    fn commit(&mut self, batch: &mut Vec<Mutation>) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.opened = None;
        let result = self.apply(batch);
        batch.clear();
        result
    }
}

enum VersionError {
    Redb(redb::Error),
    Bad(String),
}

impl<E: Into<redb::Error>> From<E> for VersionError {
    fn from(e: E) -> Self {
        VersionError::Redb(e.into())
    }
}

/// Reads the whole store file while holding a shared lock on it, so that a store that
/// another process has open (redb locks it exclusively) is reported busy rather than
/// read half-written. `None` when there is no file or it is empty.
fn read_unshared(path: &Path) -> Result<Option<Vec<u8>>, OpenError> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(OpenError::Io(io_err(path, e))),
    };
    match file.try_lock_shared() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let busy = std::io::Error::new(
                std::io::ErrorKind::ResourceBusy,
                "the store is open in another process",
            );
            return Err(OpenError::Io(io_err(path, busy)));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(OpenError::Io(io_err(path, e))),
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| OpenError::Io(io_err(path, e)))?;
    Ok((!bytes.is_empty()).then_some(bytes))
}

/// Opens `bytes` as a database in memory with redb's full integrity check (every page
/// checksum), checks the format version and decodes every record; returns them with
/// the store's format version.
fn probe(bytes: Vec<u8>) -> Result<(Snapshot, u64), OpenError> {
    // Memory cannot fail, so every error here is about the bytes.
    let bad = |e: redb::Error| OpenError::Corrupt(e.to_string());
    let backend = redb::backends::InMemoryBackend::new();
    let len = bytes.len() as u64;
    redb::StorageBackend::set_len(&backend, len)
        .and_then(|()| redb::StorageBackend::write(&backend, 0, &bytes))
        .map_err(|e| OpenError::Corrupt(format!("cannot copy the store into memory: {e}")))?;
    drop(bytes);
    let db = Database::builder()
        .set_check_integrity_on_open(true)
        .create_with_backend(backend)
        .map_err(|e| bad(e.into()))?;
    let version = check_version(&db).map_err(|e| match e {
        VersionError::Redb(e) => bad(e),
        VersionError::Bad(why) => OpenError::Corrupt(why),
    })?;
    let snap = read_all(&db).map_err(|e| match e {
        ReadError::Redb(e) => bad(e),
        ReadError::Record(why) => OpenError::Corrupt(why),
    })?;
    Ok((snap, version))
}

/// Checks the `meta` table's format version and returns it (1 or [`FORMAT_VERSION`]).
fn check_version(db: &Database) -> Result<u64, VersionError> {
    let txn = db.begin_read()?;
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => {
            return Err(VersionError::Bad(
                "no meta table: not a Canopy store".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    match meta.get(FORMAT_KEY)?.map(|g| g.value()) {
        None => Err(VersionError::Bad("meta table has no format_version".into())),
        Some(v @ 1..=FORMAT_VERSION) => Ok(v),
        Some(v) if v > FORMAT_VERSION => Err(VersionError::Bad(format!(
            "format_version {v} is newer than this broker's {FORMAT_VERSION}"
        ))),
        Some(v) => Err(VersionError::Bad(format!("invalid format_version {v}"))),
    }
}

enum ReadError {
    Redb(redb::Error),
    Record(String),
}

impl<E: Into<redb::Error>> From<E> for ReadError {
    fn from(e: E) -> Self {
        ReadError::Redb(e.into())
    }
}

fn bad_record(table: &str, key: impl std::fmt::Debug, e: format::FormatError) -> ReadError {
    ReadError::Record(format!("table {table}, key {key:?}: {e}"))
}

/// Reads and decodes everything: the snapshot, or the first table/key that is bad.
fn read_all(db: &Database) -> Result<Snapshot, ReadError> {
    let txn = db.begin_read()?;
    let retained_t = txn.open_table(RETAINED)?;
    let sessions_t = txn.open_table(SESSIONS)?;
    let deliveries_t = txn.open_table(DELIVERIES)?;
    let incoming_t = txn.open_table(INCOMING)?;
    // A version 1 store has no subscription table: its subscriptions are in the records.
    let subs_t = match txn.open_table(SUBSCRIPTIONS) {
        Ok(t) => Some(t),
        Err(TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let mut snap = Snapshot::default();
    for row in retained_t.iter()? {
        let (k, v) = row?;
        let topic = k.value();
        let msg =
            format::decode_message(v.value()).map_err(|e| bad_record("retained", topic, e))?;
        if msg.topic.as_str() != topic {
            return Err(ReadError::Record(format!(
                "table retained, key {topic:?}: holds a message for {:?}",
                msg.topic.as_str()
            )));
        }
        snap.retained.push(std::sync::Arc::new(msg));
    }
    for row in sessions_t.iter()? {
        let (k, v) = row?;
        let id = k.value();
        let mut record =
            format::decode_session(id, v.value()).map_err(|e| bad_record("sessions", id, e))?;
        if let Some(subs_t) = &subs_t {
            for row in subs_t.range((id, "")..)? {
                let (k, v) = row?;
                let (c, filter) = k.value();
                if c != id {
                    break;
                }
                let sub = format::decode_subscription(filter, v.value())
                    .map_err(|e| bad_record("subscriptions", (id, filter), e))?;
                record.subscriptions.push(sub);
            }
        }
        record.subscriptions.sort_by(|a, b| a.filter.cmp(&b.filter));
        let mut deliveries = Vec::new();
        for row in deliveries_t.range((id, 0u64)..=(id, u64::MAX))? {
            let (k, v) = row?;
            let seq = k.value().1;
            let d = format::decode_delivery(seq, v.value())
                .map_err(|e| bad_record("deliveries", (id, seq), e))?;
            deliveries.push(d);
        }
        let mut incoming = Vec::new();
        for row in incoming_t.range((id, 0u16)..=(id, u16::MAX))? {
            incoming.push(row?.0.value().1);
        }
        snap.sessions.push(StoredSession {
            record,
            deliveries,
            incoming,
        });
    }
    Ok(snap)
}
