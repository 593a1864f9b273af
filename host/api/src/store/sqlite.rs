//! The embedded backend: one SQLite file in WAL mode with
//! `synchronous=FULL`, so that a write that returned survives a crash of
//! the process or the machine.
//!
//! The file holds the tokens' hashes, so it is created with mode 0600
//! before SQLite opens it (SQLite gives the `-wal` and `-shm` files the
//! database file's mode); an existing file that others may read is
//! tightened, with a warning.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use wasmbed_pki::private_file;

use super::{ResourceStore, Role, StoreError, StoredObject, TokenRecord, new_token_id, new_uid};
use crate::model::{Kind, ObjectMeta, now_ms};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    uid TEXT NOT NULL,
    labels TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    resource_version INTEGER NOT NULL,
    deleting INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS blobs (
    sha256 TEXT PRIMARY KEY,
    bytes BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    sha256 BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    id TEXT,
    gateway TEXT,
    expires_at INTEGER
);
CREATE TABLE IF NOT EXISTS results (
    application_uid TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters (name, value) VALUES ('resource_version', 0);
";

/// Resources, blobs and token hashes in one SQLite database.
#[derive(Debug)]
pub struct SqliteStore {
    db: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed, mode 0600) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        make_private(path)?;
        Self::setup(Connection::open(path)?)
    }

    /// A private database in memory.
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(mut db: Connection) -> Result<SqliteStore, StoreError> {
        db.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: in WAL mode, NORMAL may lose the last commits on power loss.
        db.pragma_update(None, "synchronous", "FULL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        migrate_tokens(&mut db)?;
        Ok(SqliteStore { db: Mutex::new(db) })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Creates the database file with mode 0600 if missing, and tightens it
/// and its `-wal` and `-shm` files when others may read them.
fn make_private(path: &Path) -> Result<(), StoreError> {
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::File { path, source }
    };
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(name.into());
    }
    for (i, file) in files.iter().enumerate() {
        let tightened = if i == 0 {
            private_file::ensure(file)
        } else {
            private_file::tighten(file)
        }
        .map_err(failed(file))?;
        if let Some(mode) = tightened {
            tracing::warn!(
                path = %file.display(),
                was = format_args!("{mode:o}"),
                "the API database could be read by other users; its mode is now 0600"
            );
        }
    }
    Ok(())
}

/// Brings a tokens table from before token ids, gateway tokens and expiry
/// up to date: adds the columns and gives every token an id.
fn migrate_tokens(db: &mut Connection) -> Result<(), StoreError> {
    let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let columns = tx
        .prepare("SELECT name FROM pragma_table_info('tokens')")?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    for (column, kind) in [
        ("id", "TEXT"),
        ("gateway", "TEXT"),
        ("expires_at", "INTEGER"),
    ] {
        if !columns.iter().any(|c| c == column) {
            tx.execute_batch(&format!("ALTER TABLE tokens ADD COLUMN {column} {kind}"))?;
        }
    }
    let without_id = tx
        .prepare("SELECT rowid FROM tokens WHERE id IS NULL")?
        .query_map([], |row| row.get::<_, i64>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    for rowid in without_id {
        tx.execute(
            "UPDATE tokens SET id = ?1 WHERE rowid = ?2",
            params![new_token_id(), rowid],
        )?;
    }
    tx.execute_batch("CREATE UNIQUE INDEX IF NOT EXISTS tokens_by_id ON tokens (id)")?;
    tx.commit()?;
    Ok(())
}

fn next_version(tx: &rusqlite::Transaction<'_>) -> Result<u64, StoreError> {
    let value: i64 = tx.query_row(
        "UPDATE counters SET value = value + 1 WHERE name = 'resource_version' RETURNING value",
        [],
        |row| row.get(0),
    )?;
    Ok(u64::try_from(value).unwrap_or(0))
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

const COLUMNS: &str = "name, uid, labels, created_at, resource_version, deleting, data";

const PAGE_AFTER: &str = "SELECT name, uid, labels, created_at, resource_version, deleting, data \
     FROM objects WHERE kind = ?1 AND name > ?2 ORDER BY name LIMIT ?3";
const PAGE_FIRST: &str = "SELECT name, uid, labels, created_at, resource_version, deleting, data \
     FROM objects WHERE kind = ?1 ORDER BY name LIMIT ?2";

fn row_to_object(row: &rusqlite::Row<'_>) -> rusqlite::Result<(ObjectMeta, String, String)> {
    let created_at: i64 = row.get(3)?;
    let version: i64 = row.get(4)?;
    Ok((
        ObjectMeta {
            name: row.get(0)?,
            uid: row.get(1)?,
            labels: Default::default(),
            created_at: u64::try_from(created_at).unwrap_or(0),
            resource_version: u64::try_from(version).unwrap_or(0),
            deleting: row.get(5)?,
        },
        row.get(2)?,
        row.get(6)?,
    ))
}

fn decode(
    (mut metadata, labels, data): (ObjectMeta, String, String),
) -> Result<StoredObject, StoreError> {
    metadata.labels = serde_json::from_str(&labels)?;
    Ok(StoredObject {
        metadata,
        data: serde_json::from_str(&data)?,
    })
}

fn current_version(
    tx: &rusqlite::Transaction<'_>,
    kind: Kind,
    name: &str,
) -> Result<Option<u64>, StoreError> {
    let version: Option<i64> = tx
        .query_row(
            "SELECT resource_version FROM objects WHERE kind = ?1 AND name = ?2",
            params![kind.as_str(), name],
            |row| row.get(0),
        )
        .optional()?;
    Ok(version.map(|v| u64::try_from(v).unwrap_or(0)))
}

impl ResourceStore for SqliteStore {
    fn get(&self, kind: Kind, name: &str) -> Result<Option<StoredObject>, StoreError> {
        let db = self.lock();
        let row = db
            .query_row(
                &format!("SELECT {COLUMNS} FROM objects WHERE kind = ?1 AND name = ?2"),
                params![kind.as_str(), name],
                row_to_object,
            )
            .optional()?;
        row.map(decode).transpose()
    }

    fn list(&self, kind: Kind) -> Result<Vec<StoredObject>, StoreError> {
        let db = self.lock();
        let mut statement = db.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM objects WHERE kind = ?1 ORDER BY name"
        ))?;
        let rows = statement
            .query_map(params![kind.as_str()], row_to_object)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(decode).collect()
    }

    fn list_page(
        &self,
        kind: Kind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredObject>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let db = self.lock();
        // Both search the primary key's index on (kind, name), which is
        // also the order: no sort, and only the page's rows are read.
        let rows = match after {
            Some(after) => db
                .prepare_cached(PAGE_AFTER)?
                .query_map(params![kind.as_str(), after, limit], row_to_object)?
                .collect::<Result<Vec<_>, _>>()?,
            None => db
                .prepare_cached(PAGE_FIRST)?
                .query_map(params![kind.as_str(), limit], row_to_object)?
                .collect::<Result<Vec<_>, _>>()?,
        };
        drop(db);
        rows.into_iter().map(decode).collect()
    }

    fn create(&self, kind: Kind, mut object: StoredObject) -> Result<StoredObject, StoreError> {
        let mut db = self.lock();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if current_version(&tx, kind, &object.metadata.name)?.is_some() {
            return Err(StoreError::AlreadyExists {
                kind: kind.as_str(),
                name: object.metadata.name,
            });
        }
        object.metadata.uid = new_uid();
        object.metadata.created_at = now_ms();
        object.metadata.resource_version = next_version(&tx)?;
        let meta = &object.metadata;
        tx.execute(
            &format!(
                "INSERT INTO objects (kind, {COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ),
            params![
                kind.as_str(),
                meta.name,
                meta.uid,
                serde_json::to_string(&meta.labels)?,
                to_i64(meta.created_at),
                to_i64(meta.resource_version),
                meta.deleting,
                serde_json::to_string(&object.data)?,
            ],
        )?;
        tx.commit()?;
        Ok(object)
    }

    fn update(&self, kind: Kind, mut object: StoredObject) -> Result<StoredObject, StoreError> {
        let mut db = self.lock();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let name = object.metadata.name.clone();
        let current = current_version(&tx, kind, &name)?.ok_or_else(|| StoreError::NotFound {
            kind: kind.as_str(),
            name: name.clone(),
        })?;
        if current != object.metadata.resource_version {
            return Err(StoreError::Conflict {
                kind: kind.as_str(),
                name,
                expected: object.metadata.resource_version,
            });
        }
        let version = next_version(&tx)?;
        let (uid, created_at): (String, i64) = tx.query_row(
            "UPDATE objects SET labels = ?3, resource_version = ?4, deleting = ?5, data = ?6
             WHERE kind = ?1 AND name = ?2 RETURNING uid, created_at",
            params![
                kind.as_str(),
                name,
                serde_json::to_string(&object.metadata.labels)?,
                to_i64(version),
                object.metadata.deleting,
                serde_json::to_string(&object.data)?,
            ],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        tx.commit()?;
        object.metadata.uid = uid;
        object.metadata.created_at = u64::try_from(created_at).unwrap_or(0);
        object.metadata.resource_version = version;
        Ok(object)
    }

    fn delete(
        &self,
        kind: Kind,
        name: &str,
        resource_version: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut db = self.lock();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = current_version(&tx, kind, name)?.ok_or_else(|| StoreError::NotFound {
            kind: kind.as_str(),
            name: name.to_owned(),
        })?;
        if let Some(expected) = resource_version {
            if expected != current {
                return Err(StoreError::Conflict {
                    kind: kind.as_str(),
                    name: name.to_owned(),
                    expected,
                });
            }
        }
        tx.execute(
            "DELETE FROM objects WHERE kind = ?1 AND name = ?2",
            params![kind.as_str(), name],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn put_blob(&self, sha256: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT OR IGNORE INTO blobs (sha256, bytes) VALUES (?1, ?2)",
            params![sha256, bytes],
        )?;
        Ok(())
    }

    fn blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT bytes FROM blobs WHERE sha256 = ?1",
                params![sha256],
                |row| row.get(0),
            )
            .optional()?)
    }

    fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO tokens (sha256, name, role, created_at, id, gateway, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                &token.sha256[..],
                token.name,
                token.role.as_str(),
                to_i64(token.created_at),
                token.id,
                token.gateway,
                token.expires_at.map(to_i64),
            ],
        )?;
        Ok(())
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let db = self.lock();
        let mut statement = db.prepare_cached(
            "SELECT sha256, name, role, created_at, id, gateway, expires_at
             FROM tokens ORDER BY rowid",
        )?;
        let rows = statement.query_map([], |row| {
            let hash: Vec<u8> = row.get(0)?;
            let role: String = row.get(2)?;
            let created_at: i64 = row.get(3)?;
            let expires_at: Option<i64> = row.get(6)?;
            Ok(TokenRecord {
                sha256: hash.try_into().unwrap_or([0; 32]),
                name: row.get(1)?,
                role: Role::parse(&role).ok_or_else(|| {
                    rusqlite::Error::FromSqlConversionFailure(
                        2,
                        rusqlite::types::Type::Text,
                        format!("unknown token role {role:?}").into(),
                    )
                })?,
                created_at: u64::try_from(created_at).unwrap_or(0),
                id: row.get(4)?,
                gateway: row.get(5)?,
                expires_at: expires_at.map(|at| u64::try_from(at).unwrap_or(0)),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        let deleted = self
            .lock()
            .execute("DELETE FROM tokens WHERE id = ?1", params![id])?;
        if deleted == 0 {
            return Err(StoreError::NotFound {
                kind: "Token",
                name: id.to_owned(),
            });
        }
        Ok(())
    }

    fn put_results(&self, application_uid: &str, json: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO results (application_uid, data) VALUES (?1, ?2)
             ON CONFLICT (application_uid) DO UPDATE SET data = excluded.data",
            params![application_uid, json],
        )?;
        Ok(())
    }

    fn results(&self, application_uid: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT data FROM results WHERE application_uid = ?1",
                params![application_uid],
                |row| row.get(0),
            )
            .optional()?)
    }

    fn delete_results(&self, application_uid: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "DELETE FROM results WHERE application_uid = ?1",
            params![application_uid],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Device;
    use crate::store::MemoryStore;
    use crate::store::Store;
    use crate::store::tests::{crud, device, pages, paging};
    use std::sync::Arc;

    #[test]
    fn sqlite_store_passes_the_backend_tests() -> Result<(), StoreError> {
        crud(&Store::new(Arc::new(SqliteStore::in_memory()?)))?;
        paging(&Store::new(Arc::new(SqliteStore::in_memory()?)))
    }

    #[test]
    fn pages_are_read_through_the_primary_key_index() -> Result<(), StoreError> {
        let store = SqliteStore::in_memory()?;
        let db = store.lock();
        for (query, args) in [
            (PAGE_AFTER, params!["Device", "d1", 10]),
            (PAGE_FIRST, params!["Device", 10]),
        ] {
            let mut statement = db.prepare(&format!("EXPLAIN QUERY PLAN {query}"))?;
            let plan = statement
                .query_map(args, |row| row.get::<_, String>(3))?
                .collect::<Result<Vec<_>, _>>()?
                .join("; ");
            assert!(
                plan.contains("USING INDEX sqlite_autoindex_objects_1"),
                "{plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        }
        Ok(())
    }

    #[test]
    fn sqlite_and_memory_stores_give_the_same_pages() -> Result<(), StoreError> {
        let sqlite = Store::new(Arc::new(SqliteStore::in_memory()?));
        let memory = Store::new(Arc::new(MemoryStore::default()));
        // Names whose byte order differs from a human's.
        let mut names: Vec<String> = (0..57).map(|i| format!("n{}", i * 7 % 57)).collect();
        names.extend(["a", "a-b", "a0", "b--c", "z9", "9z"].map(str::to_owned));
        for (i, name) in names.iter().enumerate() {
            sqlite.create(&device(name))?;
            memory.create(&device(name))?;
            if i % 5 == 0 {
                for limit in [1, 4, 10, 100] {
                    assert_eq!(pages(&sqlite, limit)?, pages(&memory, limit)?);
                }
            }
        }
        for limit in 1..=70 {
            let (a, b) = (pages(&sqlite, limit)?, pages(&memory, limit)?);
            assert_eq!(a, b, "limit {limit}");
            assert_eq!(a.concat().len(), names.len());
        }
        for after in ["", "a", "a-", "n5", "n50", "n9", "zz"] {
            let page = |store: &Store| -> Result<Vec<String>, StoreError> {
                Ok(store
                    .list_page::<Device>(Some(after), 5)?
                    .into_iter()
                    .map(|d| d.metadata.name)
                    .collect())
            };
            assert_eq!(page(&sqlite)?, page(&memory)?, "after {after:?}");
        }
        Ok(())
    }

    #[test]
    fn reopening_keeps_objects_versions_blobs_and_tokens() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Database(e_to_sql(e)))?;
        let path = dir.path().join("api.db");
        let before = {
            let store = Store::new(Arc::new(SqliteStore::open(&path)?));
            crud(&store)?;
            store.create(&device("c"))?
        };
        let store = Store::new(Arc::new(SqliteStore::open(&path)?));
        let after: Device = store.fetch("c")?;
        assert_eq!(after, before);
        assert_eq!(store.list::<Device>()?.len(), 2);
        assert!(store.backend().blob("ab")?.is_some());
        assert_eq!(store.backend().tokens()?.len(), 2);
        // Versions keep growing across restarts: a stale version never matches.
        let next = store.create(&device("d"))?;
        assert!(next.metadata.resource_version > before.metadata.resource_version);
        Ok(())
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[cfg(unix)]
    #[test]
    fn the_database_and_its_wal_files_are_readable_by_their_owner_only() -> Result<(), StoreError> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().map_err(|e| StoreError::Database(e_to_sql(e)))?;
        let path = dir.path().join("api.db");
        let files = [
            path.clone(),
            dir.path().join("api.db-wal"),
            dir.path().join("api.db-shm"),
        ];
        let first = Store::new(Arc::new(SqliteStore::open(&path)?));
        first.create(&device("a"))?;
        for file in &files {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
        // Files made readable by others (an older version, a copy) are
        // tightened at the next open.
        for file in &files {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644))
                .map_err(|e| StoreError::Database(e_to_sql(e)))?;
        }
        let second = Store::new(Arc::new(SqliteStore::open(&path)?));
        for file in &files {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
        assert_eq!(second.list::<Device>()?.len(), 1);
        drop(first);
        Ok(())
    }

    #[test]
    fn tokens_of_an_older_database_get_ids_and_keep_their_role() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Database(e_to_sql(e)))?;
        let path = dir.path().join("api.db");
        {
            // The tokens table as it was before ids, gateways and expiry.
            let db = Connection::open(&path)?;
            db.execute_batch(
                "CREATE TABLE tokens (sha256 BLOB PRIMARY KEY, name TEXT NOT NULL,
                     role TEXT NOT NULL, created_at INTEGER NOT NULL);
                 INSERT INTO tokens VALUES (x'0101010101010101010101010101010101010101010101010101010101010101', 'admin', 'admin', 1);
                 INSERT INTO tokens VALUES (x'0202020202020202020202020202020202020202020202020202020202020202', 'ci', 'read_only', 2);",
            )?;
        }
        let tokens = SqliteStore::open(&path)?.tokens()?;
        assert_eq!(tokens.len(), 2);
        assert_eq!(
            (tokens[0].role, tokens[1].role),
            (Role::Admin, Role::ReadOnly)
        );
        assert_eq!(tokens[0].sha256, [1; 32]);
        assert_eq!(tokens[1].name, "ci");
        for token in &tokens {
            assert_eq!(token.id.len(), 16, "{token:?}");
            assert!(token.id.bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!((token.gateway.as_deref(), token.expires_at), (None, None));
        }
        assert_ne!(tokens[0].id, tokens[1].id);
        // Ids are given once: the next open keeps them.
        let again = SqliteStore::open(&path)?.tokens()?;
        assert_eq!(again, tokens);
        Ok(())
    }

    #[test]
    fn a_token_with_an_unknown_role_is_an_error_not_a_reader() -> Result<(), StoreError> {
        let store = SqliteStore::in_memory()?;
        store.lock().execute_batch(
            "INSERT INTO tokens (sha256, name, role, created_at, id) VALUES (x'03', 'x', 'root', 1, 'abc')",
        )?;
        assert!(store.tokens().is_err());
        Ok(())
    }

    fn e_to_sql(e: std::io::Error) -> rusqlite::Error {
        rusqlite::Error::ToSqlConversionFailure(Box::new(e))
    }
}
