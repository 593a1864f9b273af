//! The embedded backend: one SQLite file in WAL mode with
//! `synchronous=FULL`, so that a write that returned survives a crash of
//! the process or the machine.
//!
//! Every call runs on tokio's blocking threads, never on the async ones.
//! Watches are fed from the writes ([`WatchHub`]): this process is the
//! database's only writer.
//!
//! The file holds the tokens' hashes, so it is created with mode 0600
//! before SQLite opens it (SQLite gives the `-wal` and `-shm` files the
//! database file's mode); an existing file that others may read is
//! tightened, with a warning.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use self::schema::{make_private, migrate};
use super::{
    BlobStore, Deletion, EnrollmentRecord, EnrollmentStore, ListParams, ObjectList, PairingWindow,
    ResourceStore, ResultStore, Role, StoreError, StoredObject, TokenRecord, TokenStore,
    WatchEvent, WatchHub, WatchStream, has_labels, new_uid,
};
use crate::model::{Kind, ObjectMeta, now_ms};

/// Resources, blobs, token hashes and results in one SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Mutex<Connection>,
    hub: WatchHub,
}

impl SqliteStore {
    /// Opens (creating if needed, mode 0600) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        make_private(path)?;
        Self::setup(Connection::open(path).map_err(database)?)
    }

    /// A private database in memory.
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        Self::setup(Connection::open_in_memory().map_err(database)?)
    }

    fn setup(mut db: Connection) -> Result<SqliteStore, StoreError> {
        db.pragma_update(None, "journal_mode", "WAL")
            .map_err(database)?;
        // FULL: in WAL mode, NORMAL may lose the last commits on power loss.
        db.pragma_update(None, "synchronous", "FULL")
            .map_err(database)?;
        db.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(database)?;
        migrate(&mut db)?;
        let current: i64 = db
            .query_row(
                "SELECT value FROM counters WHERE name = 'resource_version'",
                [],
                |row| row.get(0),
            )
            .map_err(database)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                db: Mutex::new(db),
                hub: WatchHub::new(u64::try_from(current).unwrap_or(0)),
            }),
        })
    }

    /// Runs `work` on a blocking thread with the connection.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection, &WatchHub) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut db = inner.db.lock().unwrap_or_else(|e| e.into_inner());
            work(&mut db, &inner.hub)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("database task failed: {e}")))?
    }

    #[cfg(test)]
    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.inner.db.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A database failure, as the neutral error.
fn database(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("database: {e}"))
}

fn next_version(tx: &rusqlite::Transaction<'_>) -> Result<u64, StoreError> {
    let value: i64 = tx
        .query_row(
            "UPDATE counters SET value = value + 1 WHERE name = 'resource_version' RETURNING value",
            [],
            |row| row.get(0),
        )
        .map_err(database)?;
    Ok(u64::try_from(value).unwrap_or(0))
}

fn current_store_version(db: &Connection) -> Result<u64, StoreError> {
    let value: i64 = db
        .query_row(
            "SELECT value FROM counters WHERE name = 'resource_version'",
            [],
            |row| row.get(0),
        )
        .map_err(database)?;
    Ok(u64::try_from(value).unwrap_or(0))
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// An object's resource version as this backend spells it.
fn parse_version(kind: Kind, name: &str, version: &str) -> Result<u64, StoreError> {
    version.parse().map_err(|_| StoreError::Conflict {
        kind: kind.as_str(),
        name: name.to_owned(),
    })
}

const COLUMNS: &str = "name, uid, labels, finalizers, created_at, deletion_timestamp, \
     resource_version, generation, spec, status";

/// Both search the primary key's index on (kind, name), which is also the
/// order: no sort, and only the rows of the page are read.
const PAGE_AFTER: &str = "SELECT name, uid, labels, finalizers, created_at, deletion_timestamp, \
     resource_version, generation, spec, status \
     FROM resources WHERE kind = ?1 AND name > ?2 ORDER BY name LIMIT ?3";
const PAGE_FIRST: &str = "SELECT name, uid, labels, finalizers, created_at, deletion_timestamp, \
     resource_version, generation, spec, status \
     FROM resources WHERE kind = ?1 ORDER BY name LIMIT ?2";

/// A row, as read: the JSON columns still text.
struct Row {
    metadata: ObjectMeta,
    labels: String,
    finalizers: String,
    spec: String,
    status: Option<String>,
}

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let number = |i: usize| -> rusqlite::Result<u64> {
        Ok(u64::try_from(row.get::<_, i64>(i)?).unwrap_or(0))
    };
    let deletion: Option<i64> = row.get(5)?;
    Ok(Row {
        metadata: ObjectMeta {
            name: row.get(0)?,
            uid: row.get(1)?,
            labels: BTreeMap::new(),
            created_at: number(4)?,
            resource_version: number(6)?.to_string(),
            generation: number(7)?,
            finalizers: Vec::new(),
            deletion_timestamp: deletion.map(|at| u64::try_from(at).unwrap_or(0)),
        },
        labels: row.get(2)?,
        finalizers: row.get(3)?,
        spec: row.get(8)?,
        status: row.get(9)?,
    })
}

fn decode(row: Row) -> Result<StoredObject, StoreError> {
    let mut metadata = row.metadata;
    metadata.labels = serde_json::from_str(&row.labels)?;
    metadata.finalizers = serde_json::from_str(&row.finalizers)?;
    Ok(StoredObject {
        metadata,
        spec: serde_json::from_str(&row.spec)?,
        status: match row.status {
            Some(status) => serde_json::from_str(&status)?,
            None => serde_json::Value::Null,
        },
    })
}

fn load(db: &Connection, kind: Kind, name: &str) -> Result<Option<StoredObject>, StoreError> {
    db.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM resources WHERE kind = ?1 AND name = ?2"
    ))
    .and_then(|mut s| {
        s.query_row(params![kind.as_str(), name], read_row)
            .optional()
    })
    .map_err(database)?
    .map(decode)
    .transpose()
}

fn write(db: &Connection, kind: Kind, object: &StoredObject) -> Result<(), StoreError> {
    let meta = &object.metadata;
    let status = match &object.status {
        serde_json::Value::Null => None,
        status => Some(serde_json::to_string(status)?),
    };
    db.prepare_cached(&format!(
        "INSERT OR REPLACE INTO resources (kind, {COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            kind.as_str(),
            meta.name,
            meta.uid,
            serde_json::to_string(&meta.labels).unwrap_or_default(),
            serde_json::to_string(&meta.finalizers).unwrap_or_default(),
            to_i64(meta.created_at),
            meta.deletion_timestamp.map(to_i64),
            to_i64(parse_version(kind, &meta.name, &meta.resource_version).unwrap_or(0)),
            to_i64(meta.generation),
            serde_json::to_string(&object.spec).unwrap_or_default(),
            status,
        ])
    })
    .map_err(database)?;
    Ok(())
}

fn remove(db: &Connection, kind: Kind, name: &str) -> Result<(), StoreError> {
    db.execute(
        "DELETE FROM resources WHERE kind = ?1 AND name = ?2",
        params![kind.as_str(), name],
    )
    .map_err(database)?;
    Ok(())
}

/// The stored object `name`, if its version is `expected`.
fn current(
    tx: &rusqlite::Transaction<'_>,
    kind: Kind,
    name: &str,
    expected: Option<&str>,
) -> Result<StoredObject, StoreError> {
    let stored = load(tx, kind, name)?.ok_or_else(|| StoreError::NotFound {
        kind: kind.as_str(),
        name: name.to_owned(),
    })?;
    match expected {
        Some(version) if version != stored.metadata.resource_version => Err(StoreError::Conflict {
            kind: kind.as_str(),
            name: name.to_owned(),
        }),
        _ => Ok(stored),
    }
}

/// What a `continue` token holds: where the previous page ended, and the
/// list it belongs to. Opaque to clients (base64url of this, as JSON).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct ContinueToken {
    /// Format version.
    v: u8,
    kind: String,
    /// The name of the previous page's last item.
    after: String,
    selector: BTreeMap<String, String>,
}

const TOKEN_VERSION: u8 = 1;

impl ContinueToken {
    fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// The token's position in a list of `kind` with `selector`.
    fn decode(
        text: &str,
        kind: Kind,
        selector: &BTreeMap<String, String>,
    ) -> Result<String, StoreError> {
        let invalid = |detail: &str| {
            StoreError::Invalid(format!("continue is not a token of this list: {detail}"))
        };
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| invalid("not base64url"))?;
        let token: ContinueToken =
            serde_json::from_slice(&json).map_err(|_| invalid("not a continue token"))?;
        if token.v != TOKEN_VERSION {
            return Err(invalid("unknown version"));
        }
        if token.kind != kind.as_str() {
            return Err(invalid("it belongs to a list of another kind"));
        }
        if &token.selector != selector {
            return Err(invalid("it belongs to a list with another labelSelector"));
        }
        if token.after.is_empty() || token.after.len() > 255 {
            return Err(invalid("no position"));
        }
        Ok(token.after)
    }
}

/// Up to `limit` rows of `kind` after `after`, by name.
fn rows_after(
    db: &Connection,
    kind: Kind,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<StoredObject>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = match after {
        Some(after) => db.prepare_cached(PAGE_AFTER).and_then(|mut s| {
            s.query_map(params![kind.as_str(), after, limit], read_row)?
                .collect::<Result<Vec<_>, _>>()
        }),
        None => db.prepare_cached(PAGE_FIRST).and_then(|mut s| {
            s.query_map(params![kind.as_str(), limit], read_row)?
                .collect::<Result<Vec<_>, _>>()
        }),
    }
    .map_err(database)?;
    rows.into_iter().map(decode).collect()
}

/// One page: rows are read a batch at a time until the page is full; a
/// token is given only when at least one more item matches.
fn list_page(
    db: &mut Connection,
    kind: Kind,
    params: &ListParams,
) -> Result<ObjectList<StoredObject>, StoreError> {
    let tx = db.transaction().map_err(database)?;
    let resource_version = current_store_version(&tx)?.to_string();
    let mut cursor = params
        .continue_token
        .as_deref()
        .map(|token| ContinueToken::decode(token, kind, &params.labels))
        .transpose()?;
    let limit = params.limit.unwrap_or(usize::MAX);
    let batch = params.limit.map_or(usize::MAX, |limit| limit + 1).min(512);
    let mut items = Vec::new();
    let mut more = false;
    loop {
        let rows = rows_after(&tx, kind, cursor.as_deref(), batch)?;
        let exhausted = rows.len() < batch;
        if let Some(last) = rows.last() {
            cursor = Some(last.metadata.name.clone());
        }
        for object in rows
            .into_iter()
            .filter(|o| has_labels(&o.metadata.labels, &params.labels))
        {
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(object);
        }
        if more || exhausted {
            break;
        }
    }
    let continue_token = match items.last() {
        Some(last) if more => Some(
            ContinueToken {
                v: TOKEN_VERSION,
                kind: kind.as_str().to_owned(),
                after: last.metadata.name.clone(),
                selector: params.labels.clone(),
            }
            .encode(),
        ),
        _ => None,
    };
    Ok(ObjectList {
        items,
        continue_token,
        resource_version,
    })
}

#[async_trait]
impl ResourceStore for SqliteStore {
    async fn get(&self, kind: Kind, name: &str) -> Result<Option<StoredObject>, StoreError> {
        let name = name.to_owned();
        self.blocking(move |db, _| load(db, kind, &name)).await
    }

    async fn list(
        &self,
        kind: Kind,
        params: &ListParams,
    ) -> Result<ObjectList<StoredObject>, StoreError> {
        let params = params.clone();
        self.blocking(move |db, _| list_page(db, kind, &params))
            .await
    }

    async fn create(
        &self,
        kind: Kind,
        mut object: StoredObject,
    ) -> Result<StoredObject, StoreError> {
        self.blocking(move |db, hub| {
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(database)?;
            if load(&tx, kind, &object.metadata.name)?.is_some() {
                return Err(StoreError::AlreadyExists {
                    kind: kind.as_str(),
                    name: object.metadata.name,
                });
            }
            let version = next_version(&tx)?;
            let meta = &mut object.metadata;
            meta.uid = new_uid();
            meta.created_at = now_ms();
            meta.resource_version = version.to_string();
            meta.generation = 1;
            meta.deletion_timestamp = None;
            write(&tx, kind, &object)?;
            tx.commit().map_err(database)?;
            hub.publish(version, kind, WatchEvent::Added(object.clone()));
            Ok(object)
        })
        .await
    }

    async fn replace(&self, kind: Kind, object: StoredObject) -> Result<StoredObject, StoreError> {
        self.blocking(move |db, hub| {
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(database)?;
            let name = object.metadata.name.clone();
            let mut stored = current(&tx, kind, &name, Some(&object.metadata.resource_version))?;
            // As a Kubernetes API server: a write that changes nothing is
            // no write (same version, no event).
            let unchanged = stored.spec == object.spec
                && stored.metadata.labels == object.metadata.labels
                && stored.metadata.finalizers == object.metadata.finalizers;
            if unchanged {
                return Ok(stored);
            }
            let version = next_version(&tx)?;
            if stored.spec != object.spec {
                stored.metadata.generation += 1;
            }
            stored.spec = object.spec;
            stored.metadata.labels = object.metadata.labels;
            stored.metadata.finalizers = object.metadata.finalizers;
            stored.metadata.resource_version = version.to_string();
            let event = if stored.metadata.deleting() && stored.metadata.finalizers.is_empty() {
                remove(&tx, kind, &name)?;
                WatchEvent::Deleted(stored.clone())
            } else {
                write(&tx, kind, &stored)?;
                WatchEvent::Modified(stored.clone())
            };
            tx.commit().map_err(database)?;
            hub.publish(version, kind, event);
            Ok(stored)
        })
        .await
    }

    async fn replace_status(
        &self,
        kind: Kind,
        object: StoredObject,
    ) -> Result<StoredObject, StoreError> {
        self.blocking(move |db, hub| {
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(database)?;
            let name = object.metadata.name.clone();
            let mut stored = current(&tx, kind, &name, Some(&object.metadata.resource_version))?;
            if stored.status == object.status {
                return Ok(stored);
            }
            let version = next_version(&tx)?;
            stored.status = object.status;
            stored.metadata.resource_version = version.to_string();
            write(&tx, kind, &stored)?;
            tx.commit().map_err(database)?;
            hub.publish(version, kind, WatchEvent::Modified(stored.clone()));
            Ok(stored)
        })
        .await
    }

    async fn delete(
        &self,
        kind: Kind,
        name: &str,
        resource_version: Option<&str>,
    ) -> Result<Deletion<StoredObject>, StoreError> {
        let name = name.to_owned();
        let expected = resource_version.map(str::to_owned);
        self.blocking(move |db, hub| {
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(database)?;
            let mut stored = current(&tx, kind, &name, expected.as_deref())?;
            if stored.metadata.finalizers.is_empty() {
                let version = next_version(&tx)?;
                remove(&tx, kind, &name)?;
                tx.commit().map_err(database)?;
                stored.metadata.resource_version = version.to_string();
                hub.publish(version, kind, WatchEvent::Deleted(stored));
                return Ok(Deletion::Deleted);
            }
            if stored.metadata.deletion_timestamp.is_none() {
                let version = next_version(&tx)?;
                stored.metadata.deletion_timestamp = Some(now_ms());
                // As a Kubernetes API server does: marking is a change of
                // what is wanted.
                stored.metadata.generation += 1;
                stored.metadata.resource_version = version.to_string();
                write(&tx, kind, &stored)?;
                tx.commit().map_err(database)?;
                hub.publish(version, kind, WatchEvent::Modified(stored.clone()));
            }
            Ok(Deletion::Pending(stored))
        })
        .await
    }

    async fn watch(
        &self,
        kind: Kind,
        resource_version: Option<&str>,
    ) -> Result<WatchStream, StoreError> {
        let since = resource_version
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| StoreError::Invalid(format!("{v:?} is not a resource version")))
            })
            .transpose()?;
        self.inner.hub.watch(kind, since)
    }
}

#[async_trait]
impl BlobStore for SqliteStore {
    async fn put_blob(&self, sha256: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let (sha256, bytes) = (sha256.to_owned(), bytes.to_vec());
        self.blocking(move |db, _| {
            db.execute(
                "INSERT OR IGNORE INTO blobs (sha256, bytes) VALUES (?1, ?2)",
                params![sha256, bytes],
            )
            .map_err(database)?;
            Ok(())
        })
        .await
    }

    async fn blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let sha256 = sha256.to_owned();
        self.blocking(move |db, _| {
            db.query_row(
                "SELECT bytes FROM blobs WHERE sha256 = ?1",
                params![sha256],
                |row| row.get(0),
            )
            .optional()
            .map_err(database)
        })
        .await
    }
}

#[async_trait]
impl TokenStore for SqliteStore {
    async fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let token = token.clone();
        self.blocking(move |db, _| {
            db.execute(
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
            )
            .map_err(database)?;
            Ok(())
        })
        .await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.blocking(|db, _| read_tokens(db)).await
    }

    async fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.blocking(move |db, _| {
            let deleted = db
                .execute("DELETE FROM tokens WHERE id = ?1", params![id])
                .map_err(database)?;
            if deleted == 0 {
                return Err(StoreError::NotFound {
                    kind: "Token",
                    name: id,
                });
            }
            Ok(())
        })
        .await
    }
}

fn read_tokens(db: &Connection) -> Result<Vec<TokenRecord>, StoreError> {
    let mut statement = db
        .prepare_cached(
            "SELECT sha256, name, role, created_at, id, gateway, expires_at
             FROM tokens ORDER BY rowid",
        )
        .map_err(database)?;
    let rows = statement
        .query_map([], |row| {
            let hash: Vec<u8> = row.get(0)?;
            let role: String = row.get(2)?;
            let created_at: i64 = row.get(3)?;
            let expires_at: Option<i64> = row.get(6)?;
            Ok((
                TokenRecord {
                    sha256: hash.try_into().unwrap_or([0; 32]),
                    name: row.get(1)?,
                    role: Role::Admin,
                    created_at: u64::try_from(created_at).unwrap_or(0),
                    id: row.get(4)?,
                    gateway: row.get(5)?,
                    expires_at: expires_at.map(|at| u64::try_from(at).unwrap_or(0)),
                },
                role,
            ))
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(database)?;
    rows.into_iter()
        .map(|(mut token, role)| {
            token.role = Role::parse(&role)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown token role {role:?}")))?;
            Ok(token)
        })
        .collect()
}

#[async_trait]
impl ResultStore for SqliteStore {
    async fn put_results(&self, application_uid: &str, json: &str) -> Result<(), StoreError> {
        let (uid, json) = (application_uid.to_owned(), json.to_owned());
        self.blocking(move |db, _| {
            db.execute(
                "INSERT INTO results (application_uid, data) VALUES (?1, ?2)
                 ON CONFLICT (application_uid) DO UPDATE SET data = excluded.data",
                params![uid, json],
            )
            .map_err(database)?;
            Ok(())
        })
        .await
    }

    async fn results(&self, application_uid: &str) -> Result<Option<String>, StoreError> {
        let uid = application_uid.to_owned();
        self.blocking(move |db, _| {
            db.query_row(
                "SELECT data FROM results WHERE application_uid = ?1",
                params![uid],
                |row| row.get(0),
            )
            .optional()
            .map_err(database)
        })
        .await
    }

    async fn delete_results(&self, application_uid: &str) -> Result<(), StoreError> {
        let uid = application_uid.to_owned();
        self.blocking(move |db, _| {
            db.execute(
                "DELETE FROM results WHERE application_uid = ?1",
                params![uid],
            )
            .map_err(database)?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl EnrollmentStore for SqliteStore {
    async fn enrollment(&self, public_key: &str) -> Result<Option<EnrollmentRecord>, StoreError> {
        let key = public_key.to_owned();
        self.blocking(move |db, _| read_enrollment(db, &key)).await
    }

    async fn enroll(&self, record: &EnrollmentRecord) -> Result<EnrollmentRecord, StoreError> {
        let record = record.clone();
        self.blocking(move |db, _| {
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(database)?;
            tx.execute(
                "INSERT INTO enrollments (public_key, device_id, board, firmware_version, enrolled_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (public_key) DO NOTHING",
                params![
                    record.public_key,
                    record.device_id,
                    record.board,
                    record.firmware_version,
                    to_i64(record.enrolled_at),
                ],
            )
            .map_err(database)?;
            tx.execute(
                "DELETE FROM preauthorized_keys WHERE public_key = ?1",
                params![record.public_key],
            )
            .map_err(database)?;
            let stored = read_enrollment(&tx, &record.public_key)?.ok_or_else(|| {
                StoreError::Unavailable("the enrollment just written is not there".into())
            })?;
            tx.commit().map_err(database)?;
            Ok(stored)
        })
        .await
    }

    async fn preauthorize(&self, public_key: &str, at: u64) -> Result<(), StoreError> {
        let key = public_key.to_owned();
        self.blocking(move |db, _| {
            db.execute(
                "INSERT OR IGNORE INTO preauthorized_keys (public_key, added_at) VALUES (?1, ?2)",
                params![key, to_i64(at)],
            )
            .map_err(database)?;
            Ok(())
        })
        .await
    }

    async fn is_preauthorized(&self, public_key: &str) -> Result<bool, StoreError> {
        let key = public_key.to_owned();
        self.blocking(move |db, _| {
            db.query_row(
                "SELECT 1 FROM preauthorized_keys WHERE public_key = ?1",
                params![key],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(database)
        })
        .await
    }

    async fn pairing(&self) -> Result<PairingWindow, StoreError> {
        self.blocking(|db, _| {
            let row: Option<(bool, Option<i64>)> = db
                .query_row("SELECT open, until FROM pairing WHERE id = 1", [], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()
                .map_err(database)?;
            Ok(
                row.map_or_else(PairingWindow::default, |(open, until)| PairingWindow {
                    open,
                    until: until.map(|at| u64::try_from(at).unwrap_or(0)),
                }),
            )
        })
        .await
    }

    async fn set_pairing(&self, window: PairingWindow) -> Result<(), StoreError> {
        self.blocking(move |db, _| {
            db.execute(
                "INSERT INTO pairing (id, open, until) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET open = excluded.open, until = excluded.until",
                params![window.open, window.until.map(to_i64)],
            )
            .map_err(database)?;
            Ok(())
        })
        .await
    }
}

fn read_enrollment(
    db: &Connection,
    public_key: &str,
) -> Result<Option<EnrollmentRecord>, StoreError> {
    db.query_row(
        "SELECT device_id, board, firmware_version, enrolled_at FROM enrollments WHERE public_key = ?1",
        params![public_key],
        |row| {
            Ok(EnrollmentRecord {
                public_key: public_key.to_owned(),
                device_id: row.get(0)?,
                board: row.get(1)?,
                firmware_version: row.get(2)?,
                enrolled_at: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
            })
        },
    )
    .optional()
    .map_err(database)
}

mod schema;
#[cfg(test)]
mod tests;
