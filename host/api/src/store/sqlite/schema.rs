//! The SQLite backend's schema, its migrations, and the database file's
//! mode.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior, params};
use wasmbed_pki::private_file;

use super::database;
use crate::store::{StoreError, new_token_id};

/// The schema's version (`PRAGMA user_version`) and how each version is
/// reached from the one before.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: objects, blobs, tokens, results and the version counter.
    "
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
    created_at INTEGER NOT NULL
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
",
    // 2: token ids, gateway tokens and expiry (ids are given in code).
    "
ALTER TABLE tokens ADD COLUMN id TEXT;
ALTER TABLE tokens ADD COLUMN gateway TEXT;
ALTER TABLE tokens ADD COLUMN expires_at INTEGER;
",
    // 3: the Kubernetes model: spec and status apart, generation,
    // finalizers, deletion timestamp. An application that was being
    // deleted keeps waiting for its undeployment, now as a finalizer.
    "
CREATE TABLE resources (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    uid TEXT NOT NULL,
    labels TEXT NOT NULL,
    finalizers TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    deletion_timestamp INTEGER,
    resource_version INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    spec TEXT NOT NULL,
    status TEXT,
    PRIMARY KEY (kind, name)
);
INSERT INTO resources
SELECT kind, name, uid, labels,
       CASE WHEN deleting THEN '[\"wasmbed.io/undeploy\"]' ELSE '[]' END,
       created_at,
       CASE WHEN deleting THEN created_at END,
       resource_version, 1,
       json_extract(data, '$.spec'), json_extract(data, '$.status')
FROM objects;
DROP TABLE objects;
",
    // 4: enrollment signed in one place: the fleet's enrolled keys, keys
    // pre-authorised to enroll, and the pairing window (one row).
    "
CREATE TABLE enrollments (
    public_key TEXT PRIMARY KEY,
    device_id TEXT NOT NULL UNIQUE,
    board TEXT NOT NULL,
    firmware_version TEXT NOT NULL,
    enrolled_at INTEGER NOT NULL
);
CREATE TABLE preauthorized_keys (
    public_key TEXT PRIMARY KEY,
    added_at INTEGER NOT NULL
);
CREATE TABLE pairing (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    open INTEGER NOT NULL,
    until INTEGER
);
",
];

/// Brings the schema up to [`MIGRATIONS`]' last version, in one
/// transaction per step.
pub(super) fn migrate(db: &mut Connection) -> Result<(), StoreError> {
    let version: usize = db
        .pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))
        .map(|v| usize::try_from(v).unwrap_or(0))
        .map_err(database)?;
    let version = if version == 0 {
        legacy_version(db)?
    } else {
        version
    };
    if version > MIGRATIONS.len() {
        return Err(StoreError::Unavailable(format!(
            "the API database has schema version {version}, newer than this build knows ({}); \
             run a newer wasmbed",
            MIGRATIONS.len()
        )));
    }
    for (index, step) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = db
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(database)?;
        tx.execute_batch(step).map_err(database)?;
        if index == 1 {
            give_tokens_ids(&tx)?;
        }
        tx.pragma_update(None, "user_version", index + 1)
            .map_err(database)?;
        tx.commit().map_err(database)?;
    }
    Ok(())
}

/// The schema version of a database from before versions were recorded:
/// 0 (empty, or without objects), 1 (tokens without ids) or 2.
fn legacy_version(db: &Connection) -> Result<usize, StoreError> {
    let columns = |table: &str| -> Result<Vec<String>, StoreError> {
        db.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .and_then(|mut s| {
                s.query_map([], |row| row.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(database)
    };
    let tokens = columns("tokens")?;
    Ok(if tokens.is_empty() || columns("objects")?.is_empty() {
        0
    } else if tokens.iter().any(|c| c == "id") {
        2
    } else {
        1
    })
}

fn give_tokens_ids(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    let without_id = tx
        .prepare("SELECT rowid FROM tokens WHERE id IS NULL")
        .and_then(|mut s| {
            s.query_map([], |row| row.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(database)?;
    for rowid in without_id {
        tx.execute(
            "UPDATE tokens SET id = ?1 WHERE rowid = ?2",
            params![new_token_id(), rowid],
        )
        .map_err(database)?;
    }
    tx.execute_batch("CREATE UNIQUE INDEX IF NOT EXISTS tokens_by_id ON tokens (id)")
        .map_err(database)
}

/// Creates the database file with mode 0600 if missing, and tightens it
/// and its `-wal` and `-shm` files when others may read them.
pub(super) fn make_private(path: &Path) -> Result<(), StoreError> {
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
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", file.display())))?;
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
