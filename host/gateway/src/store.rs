//! The gateway's records in SQLite: enrolled devices, pre-authorized keys,
//! modules, deployments and their results. A restart loses none of them.
//!
//! Heartbeats are not written here: they are kept in memory ([`crate::fleet`])
//! and only `last_seen` is persisted when a session ends.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use wasmbed_protocol::{ApplicationId, DeploymentId, DeviceId, Limits, RuntimeKind};

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored record is corrupt: {0}")]
    Corrupt(&'static str),
    /// The database was written by a newer gateway, whose changes this
    /// build does not know: it is left alone rather than misread.
    #[error(
        "the database has schema version {found}, newer than this gateway's {supported}: \
         run the newer gateway, or restore a backup made before it ran"
    )]
    NewerSchema { found: u32, supported: usize },
}

/// What [`Store::create_fleet_deployment`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetDeployment {
    Created,
    /// Held already, for the same device and application.
    Existing,
    /// Held already, for another device or application.
    Conflict,
}

/// What [`Store::forget_deployment`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forget {
    Forgotten,
    NotFound,
    /// Kept: the gateway holds `held` results, not the number expected.
    ResultsDiffer {
        held: u32,
    },
}

/// An enrolled device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub id: DeviceId,
    pub public_key: Vec<u8>,
    pub board: String,
    pub firmware_version: String,
    pub enrolled_at_ms: u64,
    pub last_seen_ms: Option<u64>,
    /// What the device reported at its last session start; `None` until
    /// its first session.
    pub runtime: Option<RuntimeRecord>,
}

/// The WebAssembly runtime a device runs, as it reported it: which
/// firmware it is (`wasmi` for the bare-metal Rust one, `wamr` for the
/// Zephyr one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeRecord {
    /// The runtime's name as docs/protocol.md lists it, or `unknown(N)`
    /// for a code this build does not know.
    pub kind: String,
    /// Its version, at most 32 bytes (the protocol bounds it), control
    /// characters replaced so that logs and terminals show it safely.
    pub version: String,
}

impl RuntimeRecord {
    /// The record of what a device reported in its `SessionStart`.
    pub fn reported(kind: RuntimeKind, version: &str) -> RuntimeRecord {
        let kind = match kind {
            RuntimeKind::Wasmi => "wasmi".to_owned(),
            RuntimeKind::Wamr => "wamr".to_owned(),
            RuntimeKind::Wasmtime => "wasmtime".to_owned(),
            RuntimeKind::Unknown(code) => format!("unknown({code})"),
        };
        let version = version
            .chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect();
        RuntimeRecord { kind, version }
    }
}

impl std::fmt::Display for RuntimeRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.version)
    }
}

use wasmbed_gateway_api::FLEET_DEPLOYMENT_IDS;
/// What the operator wants a deployment to be, and where it stands: the
/// HTTP contract's enums, stored under their JSON names.
pub use wasmbed_gateway_api::{DeploymentState, Desired};

/// One module deployed to one device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentRecord {
    pub id: DeploymentId,
    pub device: DeviceId,
    pub application: ApplicationId,
    pub module_sha256: [u8; 32],
    pub module_size: u32,
    pub limits: Limits,
    pub desired: Desired,
    pub state: DeploymentState,
    /// Why it failed, when `state` is `Failed`.
    pub reason: Option<String>,
    pub bytes_acked: u32,
    pub updated_at_ms: u64,
}

/// One execution result reported by a device.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRecord {
    pub deployment: DeploymentId,
    pub device: DeviceId,
    pub invocation: u32,
    /// The protocol's `ExecutionResult`, CBOR-encoded as received.
    pub result_cbor: Vec<u8>,
    pub received_at_ms: u64,
}

/// What storing a result did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultInsert {
    /// False for a repeat of a stored result.
    pub inserted: bool,
    /// Older results of the deployment dropped to keep within the cap.
    pub dropped: usize,
}

/// The SQLite database behind a gateway.
///
/// Calls are short and synchronous; the connection is shared behind a
/// mutex. WAL mode with `synchronous = NORMAL` makes a committed write
/// survive a process crash, and a write is acknowledged (HTTP response,
/// device message) only after it is committed.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

/// The tables as the first gateways made them (schema version 0);
/// [`MIGRATIONS`] bring them to the current version.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS devices (
    id BLOB PRIMARY KEY,
    public_key BLOB NOT NULL UNIQUE,
    board TEXT NOT NULL,
    firmware_version TEXT NOT NULL,
    enrolled_at INTEGER NOT NULL,
    last_seen INTEGER
);
CREATE TABLE IF NOT EXISTS preauthorized_keys (
    public_key BLOB PRIMARY KEY,
    added_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS modules (
    sha256 BLOB PRIMARY KEY,
    bytes BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS deployments (
    id INTEGER PRIMARY KEY,
    device_id BLOB NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    application_id INTEGER NOT NULL,
    module_sha256 BLOB NOT NULL REFERENCES modules(sha256),
    module_size INTEGER NOT NULL,
    limits BLOB NOT NULL,
    desired TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    bytes_acked INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deployments_by_device ON deployments(device_id);
CREATE TABLE IF NOT EXISTS revoked_keys (
    public_key BLOB PRIMARY KEY,
    device_id BLOB,
    revoked_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    deployment_id INTEGER NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    device_id BLOB NOT NULL,
    invocation INTEGER NOT NULL,
    result BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (deployment_id, invocation)
);
";

/// The changes since [`SCHEMA`], in order: a database at version `n`
/// (SQLite's `user_version`, 0 in those made before versions were kept)
/// gets `MIGRATIONS[n..]`. Append only: a released step never changes.
const MIGRATIONS: &[&str] = &[
    // 1: the runtime each device reported at its last session start.
    "ALTER TABLE devices ADD COLUMN runtime_kind TEXT;
     ALTER TABLE devices ADD COLUMN runtime_version TEXT;",
    // 2: whether a control client (the API server) has read a result: a
    // stopping gateway waits for the others to be collected.
    "ALTER TABLE results ADD COLUMN collected INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX results_uncollected ON results(deployment_id) WHERE collected = 0;",
];

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Creates the tables or brings them to [`SCHEMA_VERSION`], in one
/// transaction with the version number: a crash leaves the previous
/// version whole, and two gateways opening the database at once take
/// turns. A database of a newer version is left untouched.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: u32 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let done = usize::try_from(found).unwrap_or(usize::MAX);
    if done > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    tx.execute_batch(SCHEMA)?;
    for (version, step) in MIGRATIONS.iter().enumerate().skip(done) {
        let version = version + 1;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", version)?;
        tracing::info!(version, "gateway database schema upgraded");
    }
    tx.commit()?;
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn device_id(bytes: Vec<u8>) -> Result<DeviceId, StoreError> {
    <[u8; 16]>::try_from(bytes)
        .map(DeviceId)
        .map_err(|_| StoreError::Corrupt("device id"))
}

impl Store {
    /// Opens (creating if needed) the database at `path`. It is created
    /// with mode 0600 before SQLite opens it (SQLite gives its `-wal` and
    /// `-shm` files the same mode); an existing database, `-wal` or `-shm`
    /// file that others may read is tightened, with a warning.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        use wasmbed_pki::private_file;
        let wal_file = |suffix: &str| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            std::path::PathBuf::from(name)
        };
        let files = [path.to_path_buf(), wal_file("-wal"), wal_file("-shm")];
        for (i, file) in files.iter().enumerate() {
            let made_private = if i == 0 {
                private_file::ensure(file)
            } else {
                private_file::tighten(file)
            };
            match made_private {
                Ok(Some(mode)) => tracing::warn!(
                    path = %file.display(),
                    was = format_args!("{mode:o}"),
                    "the gateway database could be read by other users; its mode is now 0600"
                ),
                Ok(None) => {}
                Err(e) => {
                    return Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                        Some(format!("making {} private (0600): {e}", file.display())),
                    )));
                }
            }
        }
        Self::init(Connection::open(path)?)
    }

    /// A database that lives only in memory, for tests and benchmarks.
    pub fn in_memory() -> Result<Store, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        // Pairing was once kept here and survived restarts; it is in memory
        // now (`crate::pairing`), and an old row must not confuse anyone.
        conn.execute("DELETE FROM settings WHERE key = 'pairing_open'", [])?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent:
        // every multi-statement change runs in a transaction.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn preauthorize(&self, public_key: &[u8]) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR IGNORE INTO preauthorized_keys (public_key, added_at) VALUES (?1, ?2)",
            params![public_key, ms(unix_ms())],
        )?;
        Ok(())
    }

    pub fn is_preauthorized(&self, public_key: &[u8]) -> Result<bool, StoreError> {
        let found: Option<i64> = self
            .conn()
            .query_row(
                "SELECT 1 FROM preauthorized_keys WHERE public_key = ?1",
                params![public_key],
                |row| row.get(0),
            )
            .optional()?;
        Ok(found.is_some())
    }

    /// Records a newly enrolled device and consumes its pre-authorization.
    pub fn insert_device(&self, device: &DeviceRecord) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO devices (id, public_key, board, firmware_version, enrolled_at, last_seen,
                                  runtime_kind, runtime_version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                &device.id.0[..],
                device.public_key,
                device.board,
                device.firmware_version,
                ms(device.enrolled_at_ms),
                device.last_seen_ms.map(ms),
                device.runtime.as_ref().map(|r| &r.kind),
                device.runtime.as_ref().map(|r| &r.version),
            ],
        )?;
        tx.execute(
            "DELETE FROM preauthorized_keys WHERE public_key = ?1",
            params![device.public_key],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Revokes a device: its key is never accepted again (at the TLS
    /// handshake or to enroll), and its record, deployments and results
    /// go. Returns the record, or `None` for an unknown id.
    pub fn revoke_device(&self, id: DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let Some(device) = query_devices(&tx, "WHERE id = ?1", params![&id.0[..]])?.pop() else {
            return Ok(None);
        };
        tx.execute(
            "INSERT OR REPLACE INTO revoked_keys (public_key, device_id, revoked_at) VALUES (?1, ?2, ?3)",
            params![device.public_key, &id.0[..], ms(unix_ms())],
        )?;
        tx.execute(
            "DELETE FROM preauthorized_keys WHERE public_key = ?1",
            params![device.public_key],
        )?;
        // Deployments and their results go with the device (ON DELETE CASCADE).
        tx.execute("DELETE FROM devices WHERE id = ?1", params![&id.0[..]])?;
        tx.commit()?;
        Ok(Some(device))
    }

    /// Whether the device `id` was revoked (its record is gone then).
    pub fn was_revoked(&self, id: DeviceId) -> Result<bool, StoreError> {
        let found: Option<i64> = self
            .conn()
            .query_row(
                "SELECT 1 FROM revoked_keys WHERE device_id = ?1",
                params![&id.0[..]],
                |row| row.get(0),
            )
            .optional()?;
        Ok(found.is_some())
    }

    /// Every revoked public key.
    pub fn revoked_keys(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT public_key FROM revoked_keys")?;
        let keys = stmt.query_map([], |row| row.get(0))?;
        Ok(keys.collect::<Result<_, _>>()?)
    }

    pub fn device_by_key(&self, public_key: &[u8]) -> Result<Option<DeviceRecord>, StoreError> {
        self.query_devices("WHERE public_key = ?1", params![public_key])
            .map(|mut v| v.pop())
    }

    pub fn device(&self, id: DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        self.query_devices("WHERE id = ?1", params![&id.0[..]])
            .map(|mut v| v.pop())
    }

    pub fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        self.query_devices("ORDER BY enrolled_at, id", [])
    }

    fn query_devices(
        &self,
        clause: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<DeviceRecord>, StoreError> {
        query_devices(&self.conn(), clause, params)
    }

    pub fn touch_device(&self, id: DeviceId, last_seen_ms: u64) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE devices SET last_seen = ?2 WHERE id = ?1",
            params![&id.0[..], ms(last_seen_ms)],
        )?;
        Ok(())
    }

    /// Records the runtime the device reported at a session start.
    pub fn set_runtime(&self, id: DeviceId, runtime: &RuntimeRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE devices SET runtime_kind = ?2, runtime_version = ?3 WHERE id = ?1",
            params![&id.0[..], runtime.kind, runtime.version],
        )?;
        Ok(())
    }

    /// Stores a module once, keyed by its SHA-256.
    pub fn put_module(&self, sha256: &[u8; 32], bytes: &[u8]) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR IGNORE INTO modules (sha256, bytes) VALUES (?1, ?2)",
            params![&sha256[..], bytes],
        )?;
        Ok(())
    }

    pub fn module(&self, sha256: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT bytes FROM modules WHERE sha256 = ?1",
                params![&sha256[..]],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// Creates one deployment per device in a single transaction and
    /// returns their ids in the order of `devices`.
    pub fn create_deployments(
        &self,
        devices: &[DeviceId],
        application: ApplicationId,
        sha256: &[u8; 32],
        module_size: u32,
        limits: &Limits,
    ) -> Result<Vec<DeploymentId>, StoreError> {
        let limits = minicbor::to_vec(limits).map_err(|_| StoreError::Corrupt("limits"))?;
        let now = ms(unix_ms());
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        // Ids are never given twice, not even those of deployments deleted
        // with a revoked device: the API server may still hold one and ask
        // for its removal. The highest id given is kept in the settings
        // (SQLite alone would hand out the highest deleted ones again).
        // Ids the API server gives (fleet-wide) are above those counted here.
        let mut last: i64 = tx.query_row(
            "SELECT MAX(
                 COALESCE((SELECT MAX(id) FROM deployments WHERE id < ?1), 0),
                 COALESCE((SELECT CAST(value AS INTEGER) FROM settings
                           WHERE key = 'last_deployment_id'), 0))",
            params![ms(*FLEET_DEPLOYMENT_IDS.start())],
            |row| row.get(0),
        )?;
        let mut ids = Vec::with_capacity(devices.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO deployments
                 (id, device_id, application_id, module_sha256, module_size, limits, desired, state, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', 'pending', ?7)",
            )?;
            for device in devices {
                last = last
                    .checked_add(1)
                    .filter(|&id| id < ms(*FLEET_DEPLOYMENT_IDS.start()))
                    .ok_or(StoreError::Corrupt("deployment id"))?;
                insert.execute(params![
                    last,
                    &device.0[..],
                    ms(application.0),
                    &sha256[..],
                    module_size,
                    limits,
                    now
                ])?;
                let id = u64::try_from(last).map_err(|_| StoreError::Corrupt("deployment id"))?;
                ids.push(DeploymentId(id));
            }
        }
        tx.execute(
            "INSERT INTO settings (key, value) VALUES ('last_deployment_id', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![last.to_string()],
        )?;
        tx.commit()?;
        Ok(ids)
    }

    /// Creates the deployment `id` (a fleet-wide id, see
    /// [`FLEET_DEPLOYMENT_IDS`]) of `device`, unless this gateway holds it.
    /// One held for the same device and application is kept, made wanted
    /// again if it was being removed ([`FleetDeployment::Existing`]); one
    /// held for another is a [`FleetDeployment::Conflict`].
    pub fn create_fleet_deployment(
        &self,
        id: DeploymentId,
        device: DeviceId,
        application: ApplicationId,
        sha256: &[u8; 32],
        module_size: u32,
        limits: &Limits,
    ) -> Result<FleetDeployment, StoreError> {
        if let Some(held) = self.deployment(id)? {
            if held.device != device || held.application != application {
                return Ok(FleetDeployment::Conflict);
            }
            if held.desired == Desired::Removed {
                self.revive(id, held.state == DeploymentState::Removed)?;
            }
            return Ok(FleetDeployment::Existing);
        }
        let limits = minicbor::to_vec(limits).map_err(|_| StoreError::Corrupt("limits"))?;
        self.conn().execute(
            "INSERT INTO deployments
             (id, device_id, application_id, module_sha256, module_size, limits, desired, state, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', 'pending', ?7)",
            params![
                ms(id.0),
                &device.0[..],
                ms(application.0),
                &sha256[..],
                module_size,
                limits,
                ms(unix_ms())
            ],
        )?;
        Ok(FleetDeployment::Created)
    }

    /// Wants a deployment that was being removed again. One the device
    /// already removed starts over, without the results of its last run:
    /// the device runs it anew, numbering its invocations from the start.
    fn revive(&self, id: DeploymentId, removed: bool) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if removed {
            tx.execute(
                "DELETE FROM results WHERE deployment_id = ?1",
                params![ms(id.0)],
            )?;
        }
        tx.execute(
            "UPDATE deployments SET desired = 'running', updated_at = ?2,
                 state = CASE WHEN state = 'removed' THEN 'pending' ELSE state END,
                 bytes_acked = CASE WHEN state = 'removed' THEN 0 ELSE bytes_acked END
             WHERE id = ?1",
            params![ms(id.0), ms(unix_ms())],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Drops deployment `id` and its results, if this gateway holds
    /// `expected_results` of them (the number its caller collected).
    pub fn forget_deployment(
        &self,
        id: DeploymentId,
        expected_results: u32,
    ) -> Result<Forget, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let held: Option<u32> = tx
            .query_row(
                "SELECT (SELECT COUNT(*) FROM results WHERE deployment_id = ?1)
                 FROM deployments WHERE id = ?1",
                params![ms(id.0)],
                |row| row.get(0),
            )
            .optional()?;
        let outcome = match held {
            None => Forget::NotFound,
            Some(held) if held != expected_results => Forget::ResultsDiffer { held },
            Some(_) => {
                tx.execute("DELETE FROM deployments WHERE id = ?1", params![ms(id.0)])?;
                Forget::Forgotten
            }
        };
        tx.commit()?;
        Ok(outcome)
    }

    pub fn set_desired(&self, id: DeploymentId, desired: Desired) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            "UPDATE deployments SET desired = ?2, updated_at = ?3 WHERE id = ?1",
            params![ms(id.0), desired.as_str(), ms(unix_ms())],
        )?;
        Ok(changed == 1)
    }

    /// Records what a device reported about a deployment.
    pub fn set_state(
        &self,
        id: DeploymentId,
        state: DeploymentState,
        reason: Option<&str>,
        bytes_acked: Option<u32>,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE deployments SET state = ?2, reason = ?3,
                 bytes_acked = COALESCE(?4, bytes_acked), updated_at = ?5
             WHERE id = ?1",
            params![ms(id.0), state.as_str(), reason, bytes_acked, ms(unix_ms())],
        )?;
        Ok(())
    }

    pub fn deployment(&self, id: DeploymentId) -> Result<Option<DeploymentRecord>, StoreError> {
        self.query_deployments("WHERE id = ?1", params![ms(id.0)])
            .map(|mut v| v.pop())
    }

    pub fn deployments_of(&self, device: DeviceId) -> Result<Vec<DeploymentRecord>, StoreError> {
        self.query_deployments("WHERE device_id = ?1 ORDER BY id", params![&device.0[..]])
    }

    pub fn deployments(&self) -> Result<Vec<DeploymentRecord>, StoreError> {
        self.query_deployments("ORDER BY id", [])
    }

    /// Deployments of `device` the device has not finished yet: the
    /// gateway (re)sends them when the device connects.
    pub fn unfinished_deployments(
        &self,
        device: DeviceId,
    ) -> Result<Vec<DeploymentRecord>, StoreError> {
        self.query_deployments(
            "WHERE device_id = ?1 AND (
                 (desired = 'running' AND state IN ('pending', 'transferring'))
              OR (desired = 'stopped' AND state IN ('installed', 'running'))
              -- A failed application may still hold a slot on the device
              -- (it trapped, or was interrupted by a reset): remove it too.
              OR (desired = 'removed' AND state NOT IN ('removed', 'pending')))
             ORDER BY id",
            params![&device.0[..]],
        )
    }

    fn query_deployments(
        &self,
        clause: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<DeploymentRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT id, device_id, application_id, module_sha256, module_size, limits,
                    desired, state, reason, bytes_acked, updated_at
             FROM deployments {clause}"
        ))?;
        let rows = stmt.query_map(params, |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, Vec<u8>>(3)?,
                row.get::<_, u32>(4)?,
                row.get::<_, Vec<u8>>(5)?,
                row.get::<_, String>(6)?,
                row.get::<_, String>(7)?,
                row.get::<_, Option<String>>(8)?,
                row.get::<_, u32>(9)?,
                row.get::<_, i64>(10)?,
            ))
        })?;
        rows.map(|row| {
            let (id, device, app, sha, size, limits, desired, state, reason, acked, updated) = row?;
            Ok(DeploymentRecord {
                id: DeploymentId(u64::try_from(id).map_err(|_| StoreError::Corrupt("id"))?),
                device: device_id(device)?,
                application: ApplicationId(u64::try_from(app).unwrap_or(0)),
                module_sha256: <[u8; 32]>::try_from(sha)
                    .map_err(|_| StoreError::Corrupt("module hash"))?,
                module_size: size,
                limits: minicbor::decode(&limits).map_err(|_| StoreError::Corrupt("limits"))?,
                desired: Desired::from_name(&desired)
                    .ok_or(StoreError::Corrupt("desired state"))?,
                state: DeploymentState::from_name(&state)
                    .ok_or(StoreError::Corrupt("deployment state"))?,
                reason,
                bytes_acked: acked,
                updated_at_ms: u64::try_from(updated).unwrap_or(0),
            })
        })
        .collect()
    }

    /// Stores a result; a repeated (deployment, invocation) is ignored, so a
    /// result re-sent after a reconnect is recorded once. A deployment
    /// keeps at most `keep` results: storing one more drops the oldest
    /// received.
    pub fn insert_result(
        &self,
        result: &ResultRecord,
        keep: usize,
    ) -> Result<ResultInsert, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO results (deployment_id, device_id, invocation, result, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                ms(result.deployment.0),
                &result.device.0[..],
                result.invocation,
                result.result_cbor,
                ms(result.received_at_ms)
            ],
        )? == 1;
        let mut dropped = 0;
        if inserted {
            let held: i64 = tx.query_row(
                "SELECT COUNT(*) FROM results WHERE deployment_id = ?1",
                params![ms(result.deployment.0)],
                |row| row.get(0),
            )?;
            let keep = i64::try_from(keep.max(1)).unwrap_or(i64::MAX);
            if held > keep {
                dropped = tx.execute(
                    "DELETE FROM results WHERE rowid IN (
                         SELECT rowid FROM results WHERE deployment_id = ?1
                         ORDER BY rowid LIMIT ?2)",
                    params![ms(result.deployment.0), held - keep],
                )?;
            }
        }
        tx.commit()?;
        Ok(ResultInsert { inserted, dropped })
    }

    /// Notes that a control client read these results.
    pub fn mark_collected(&self, results: &[ResultRecord]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut mark = tx.prepare_cached(
                "UPDATE results SET collected = 1
                 WHERE deployment_id = ?1 AND invocation = ?2 AND collected = 0",
            )?;
            for result in results {
                mark.execute(params![ms(result.deployment.0), result.invocation])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Results no control client has read yet.
    pub fn uncollected_results(&self) -> Result<u64, StoreError> {
        let count: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM results WHERE collected = 0",
            [],
            |row| row.get(0),
        )?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// The newest results first, optionally of one deployment.
    pub fn results(
        &self,
        deployment: Option<DeploymentId>,
        limit: u32,
    ) -> Result<Vec<ResultRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT deployment_id, device_id, invocation, result, received_at FROM results
             WHERE ?1 IS NULL OR deployment_id = ?1
             ORDER BY received_at DESC, deployment_id, invocation LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![deployment.map(|d| ms(d.0)), limit], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, u32>(2)?,
                row.get::<_, Vec<u8>>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })?;
        rows.map(|row| {
            let (deployment, device, invocation, result_cbor, at) = row?;
            Ok(ResultRecord {
                deployment: DeploymentId(u64::try_from(deployment).unwrap_or(0)),
                device: device_id(device)?,
                invocation,
                result_cbor,
                received_at_ms: u64::try_from(at).unwrap_or(0),
            })
        })
        .collect()
    }
}

/// The devices a `WHERE` clause selects.
fn query_devices(
    conn: &Connection,
    clause: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<DeviceRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, public_key, board, firmware_version, enrolled_at, last_seen,
                runtime_kind, runtime_version
         FROM devices {clause}"
    ))?;
    let rows = stmt.query_map(params, |row| {
        Ok((
            (
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ),
            row.get::<_, i64>(4)?,
            row.get::<_, Option<i64>>(5)?,
            row.get::<_, Option<String>>(6)?,
            row.get::<_, Option<String>>(7)?,
        ))
    })?;
    rows.map(|row| {
        let ((id, public_key, board, firmware_version), enrolled, seen, kind, version) = row?;
        let runtime = match (kind, version) {
            (Some(kind), Some(version)) => Some(RuntimeRecord { kind, version }),
            (None, None) => None,
            _ => return Err(StoreError::Corrupt("device runtime")),
        };
        Ok(DeviceRecord {
            id: device_id(id)?,
            public_key,
            board,
            firmware_version,
            enrolled_at_ms: u64::try_from(enrolled).unwrap_or(0),
            last_seen_ms: seen.map(|s| u64::try_from(s).unwrap_or(0)),
            runtime,
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn device(id: u8) -> DeviceRecord {
        DeviceRecord {
            id: DeviceId([id; 16]),
            public_key: vec![4, id],
            board: "mps2-an385".to_owned(),
            firmware_version: "0.1.0".to_owned(),
            enrolled_at_ms: 1_000,
            last_seen_ms: None,
            runtime: None,
        }
    }

    fn user_version(path: &Path) -> u32 {
        Connection::open(path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn runtime_kinds_are_named_as_the_protocol_documents_them() {
        let named = |kind, version| RuntimeRecord::reported(kind, version).to_string();
        assert_eq!(named(RuntimeKind::Wasmi, "2.0.0"), "wasmi 2.0.0");
        assert_eq!(named(RuntimeKind::Wamr, "2.4.3"), "wamr 2.4.3");
        assert_eq!(named(RuntimeKind::Wasmtime, "30"), "wasmtime 30");
        assert_eq!(named(RuntimeKind::from_code(7), "x"), "unknown(7) x");
        // A version is shown in logs and terminals: no control characters.
        let hostile = RuntimeRecord::reported(RuntimeKind::Wamr, "2.4\n\u{1b}[2J");
        assert_eq!(hostile.version, "2.4\u{fffd}\u{fffd}[2J");
    }

    #[test]
    fn the_runtime_of_a_device_is_kept_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.db");
        let store = Store::open(&path).unwrap();
        store.insert_device(&device(1)).unwrap();
        store.insert_device(&device(2)).unwrap();
        assert_eq!(
            store.device(DeviceId([1; 16])).unwrap().unwrap().runtime,
            None
        );

        let wasmi = RuntimeRecord::reported(RuntimeKind::Wasmi, "2.0.0");
        store.set_runtime(DeviceId([1; 16]), &wasmi).unwrap();
        // Reflashed with the Zephyr firmware: the next session says so.
        let wamr = RuntimeRecord::reported(RuntimeKind::Wamr, "2.4.3");
        store.set_runtime(DeviceId([1; 16]), &wamr).unwrap();
        drop(store);

        let store = Store::open(&path).unwrap();
        let devices = store.devices().unwrap();
        assert_eq!(devices[0].runtime, Some(wamr));
        assert_eq!(devices[1].runtime, None, "only the device that reported");
    }

    #[test]
    fn a_database_from_before_schema_versions_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.db");
        {
            // The devices table as gateways made it before version 1.
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE devices (
                     id BLOB PRIMARY KEY,
                     public_key BLOB NOT NULL UNIQUE,
                     board TEXT NOT NULL,
                     firmware_version TEXT NOT NULL,
                     enrolled_at INTEGER NOT NULL,
                     last_seen INTEGER
                 );
                 INSERT INTO devices VALUES (x'01010101010101010101010101010101', x'0401',
                                             'mps2-an385', '0.1.0', 1000, 2000);",
            )
            .unwrap();
        }
        assert_eq!(user_version(&path), 0);

        let store = Store::open(&path).unwrap();
        let id = DeviceId([1; 16]);
        let kept = store.device(id).unwrap().unwrap();
        assert_eq!(kept.last_seen_ms, Some(2_000));
        assert_eq!(kept.runtime, None);
        let wamr = RuntimeRecord::reported(RuntimeKind::Wamr, "2.4.3");
        store.set_runtime(id, &wamr).unwrap();
        drop(store);
        assert_eq!(user_version(&path), 2);
        assert_eq!(SCHEMA_VERSION, 2);

        // Opening an up-to-date database changes nothing.
        let store = Store::open(&path).unwrap();
        assert_eq!(store.device(id).unwrap().unwrap().runtime, Some(wamr));
        assert_eq!(store.uncollected_results().unwrap(), 0);
        assert_eq!(user_version(&path), 2);
    }

    #[test]
    fn a_database_of_a_newer_gateway_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 9)
            .unwrap();
        match Store::open(&path) {
            Err(StoreError::NewerSchema { found, supported }) => {
                assert_eq!((found, supported), (9, SCHEMA_VERSION));
            }
            other => panic!("expected NewerSchema, got {other:?}"),
        }
        assert_eq!(user_version(&path), 9);
        let tables: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM sqlite_master", [], |row| row.get(0))
            .unwrap();
        assert_eq!(tables, 0, "no table of this version's schema was made");
    }
}
