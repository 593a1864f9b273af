//! Where resources, module blobs and token hashes are kept.
//!
//! [`ResourceStore`] is the object-safe backend interface (SQLite in
//! [`SqliteStore`], memory in [`MemoryStore`]); [`Store`] wraps one with
//! typed access and change notifications for the controller.

mod memory;
mod sqlite;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::model::{ExecutionResult, Kind, Object, ObjectMeta};

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {name} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} {name} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    /// The update carried a resource version that is no longer current.
    #[error("{kind} {name} was changed since version {expected}")]
    Conflict {
        kind: &'static str,
        name: String,
        expected: u64,
    },
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("stored object does not decode: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// The database file could not be made private (mode 0600).
    #[error("{path}: {source}")]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A resource with its kind-specific part (`spec`, `status`) as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    pub metadata: ObjectMeta,
    /// Everything but `metadata`, a JSON object.
    pub data: serde_json::Value,
}

/// What a bearer token may do (see [`crate::http::auth`] for the rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, tokens included.
    Admin,
    /// Devices and applications (read and write); reads gateways; no tokens.
    Operator,
    /// Reads everything but tokens.
    ReadOnly,
    /// Registers and updates one Gateway resource, its own; nothing else.
    Gateway,
}

impl Role {
    /// The role's name, as the API and the store spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::ReadOnly => "read_only",
            Role::Gateway => "gateway",
        }
    }

    /// The role named `name` (as [`as_str`](Role::as_str) spells it).
    pub fn parse(name: &str) -> Option<Role> {
        [Role::Admin, Role::Operator, Role::ReadOnly, Role::Gateway]
            .into_iter()
            .find(|role| role.as_str() == name)
    }
}

/// A token as stored: its SHA-256, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Public name of the token in lists and revocations: random, not
    /// derived from the token.
    pub id: String,
    pub sha256: [u8; 32],
    /// What it is for, as its creator said.
    pub name: String,
    pub role: Role,
    /// For [`Role::Gateway`], the name of the one Gateway resource it may
    /// register and update.
    pub gateway: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    /// Refused from then on (milliseconds since the Unix epoch); `None`:
    /// never expires.
    pub expires_at: Option<u64>,
}

impl TokenRecord {
    /// Whether the token has expired at `now` (milliseconds since the epoch).
    pub fn expired_at(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// A backend. Writes are durable once they return.
pub trait ResourceStore: Send + Sync + std::fmt::Debug {
    fn get(&self, kind: Kind, name: &str) -> Result<Option<StoredObject>, StoreError>;
    /// Every object of `kind`, by name.
    fn list(&self, kind: Kind) -> Result<Vec<StoredObject>, StoreError>;
    /// Up to `limit` objects of `kind` by name, those whose name sorts
    /// after `after` (byte order) or from the first one: one page of a
    /// list that may change between pages.
    fn list_page(
        &self,
        kind: Kind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredObject>, StoreError>;
    /// Stores a new object; assigns `uid`, `created_at` and
    /// `resource_version` (whatever the caller put there is ignored).
    fn create(&self, kind: Kind, object: StoredObject) -> Result<StoredObject, StoreError>;
    /// Replaces an object if its `resource_version` is still the stored
    /// one; returns it with the new version. `uid` and `created_at` are kept.
    fn update(&self, kind: Kind, object: StoredObject) -> Result<StoredObject, StoreError>;
    /// Deletes an object, if `resource_version` is given only at that version.
    fn delete(
        &self,
        kind: Kind,
        name: &str,
        resource_version: Option<u64>,
    ) -> Result<(), StoreError>;
    fn put_blob(&self, sha256: &str, bytes: &[u8]) -> Result<(), StoreError>;
    fn blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    /// Every token, oldest first.
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// Forgets the token with public id `id`.
    fn delete_token(&self, id: &str) -> Result<(), StoreError>;
    /// Replaces the execution results kept for an application (by `uid`),
    /// a JSON array.
    fn put_results(&self, application_uid: &str, json: &str) -> Result<(), StoreError>;
    /// The execution results kept for an application, if any.
    fn results(&self, application_uid: &str) -> Result<Option<String>, StoreError>;
    fn delete_results(&self, application_uid: &str) -> Result<(), StoreError>;
}

/// A random identifier in UUID v4 form.
pub(crate) fn new_uid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A token's public id: 16 random hex digits, unrelated to the token.
pub(crate) fn new_token_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

fn to_stored<T: Object>(object: &T) -> Result<StoredObject, StoreError> {
    let mut value = serde_json::to_value(object)?;
    if let Some(map) = value.as_object_mut() {
        map.remove("metadata");
    }
    Ok(StoredObject {
        metadata: object.metadata().clone(),
        data: value,
    })
}

fn from_stored<T: Object>(stored: StoredObject) -> Result<T, StoreError> {
    let mut value = stored.data;
    if let Some(map) = value.as_object_mut() {
        map.insert("metadata".into(), serde_json::to_value(stored.metadata)?);
    }
    Ok(serde_json::from_value(value)?)
}

/// A backend with typed access; every write bumps a change counter the
/// controller watches (unless the handle is [`quiet`](Store::quiet)).
#[derive(Debug, Clone)]
pub struct Store {
    backend: Arc<dyn ResourceStore>,
    changes: Arc<watch::Sender<u64>>,
    notify: bool,
}

impl Store {
    pub fn new(backend: Arc<dyn ResourceStore>) -> Store {
        Store {
            backend,
            changes: Arc::new(watch::channel(0).0),
            notify: true,
        }
    }

    pub fn in_memory() -> Store {
        Store::new(Arc::new(MemoryStore::default()))
    }

    pub fn backend(&self) -> &dyn ResourceStore {
        self.backend.as_ref()
    }

    /// The same store, whose writes do not wake the controller (its own).
    pub fn quiet(&self) -> Store {
        Store {
            notify: false,
            ..self.clone()
        }
    }

    /// Changes with every noticed write.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        if self.notify {
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    pub fn get<T: Object>(&self, name: &str) -> Result<Option<T>, StoreError> {
        self.backend
            .get(T::KIND, name)?
            .map(from_stored)
            .transpose()
    }

    /// Like [`get`](Store::get), absence is an error.
    pub fn fetch<T: Object>(&self, name: &str) -> Result<T, StoreError> {
        self.get(name)?.ok_or_else(|| StoreError::NotFound {
            kind: T::KIND.as_str(),
            name: name.to_owned(),
        })
    }

    pub fn list<T: Object>(&self) -> Result<Vec<T>, StoreError> {
        self.backend
            .list(T::KIND)?
            .into_iter()
            .map(from_stored)
            .collect()
    }

    /// Up to `limit` objects by name, after the one named `after`.
    pub fn list_page<T: Object>(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        self.backend
            .list_page(T::KIND, after, limit)?
            .into_iter()
            .map(from_stored)
            .collect()
    }

    pub fn create<T: Object>(&self, object: &T) -> Result<T, StoreError> {
        let stored = self.backend.create(T::KIND, to_stored(object)?)?;
        self.changed();
        from_stored(stored)
    }

    pub fn update<T: Object>(&self, object: &T) -> Result<T, StoreError> {
        let stored = self.backend.update(T::KIND, to_stored(object)?)?;
        self.changed();
        from_stored(stored)
    }

    /// Reads, changes and writes back, again on conflicts; `change`
    /// returns whether it changed anything (nothing is written if not).
    pub fn modify<T: Object>(
        &self,
        name: &str,
        mut change: impl FnMut(&mut T) -> bool,
    ) -> Result<T, StoreError> {
        loop {
            let mut object: T = self.fetch(name)?;
            if !change(&mut object) {
                return Ok(object);
            }
            match self.update(&object) {
                Err(StoreError::Conflict { .. }) => continue,
                other => return other,
            }
        }
    }

    /// The execution results kept for an application (by `uid`), newest
    /// first.
    pub fn results(&self, application_uid: &str) -> Result<Vec<ExecutionResult>, StoreError> {
        match self.backend.results(application_uid)? {
            Some(json) => Ok(serde_json::from_str(&json)?),
            None => Ok(Vec::new()),
        }
    }

    /// Replaces an application's execution results. Not a resource
    /// change: nobody is notified.
    pub fn put_results(
        &self,
        application_uid: &str,
        results: &[ExecutionResult],
    ) -> Result<(), StoreError> {
        self.backend
            .put_results(application_uid, &serde_json::to_string(results)?)
    }

    pub fn delete<T: Object>(
        &self,
        name: &str,
        resource_version: Option<u64>,
    ) -> Result<(), StoreError> {
        self.backend.delete(T::KIND, name, resource_version)?;
        self.changed();
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Tests every backend must pass.
    use super::*;
    use crate::model::{Device, DeviceSpec, DeviceStatus};

    pub(crate) fn device(name: &str) -> Device {
        Device {
            metadata: ObjectMeta {
                name: name.into(),
                labels: [("site".to_owned(), "lab".to_owned())].into(),
                ..ObjectMeta::default()
            },
            spec: DeviceSpec {
                board: "wasmbed-sim".into(),
                gateway: "gw".into(),
                device_id: None,
                emulated: true,
                revoked: false,
            },
            status: DeviceStatus::default(),
        }
    }

    pub(crate) fn crud(store: &Store) -> Result<(), StoreError> {
        let created = store.create(&device("a"))?;
        assert_eq!(created.metadata.uid.len(), 36);
        assert!(created.metadata.resource_version > 0);
        assert!(created.metadata.created_at > 0);
        assert!(matches!(
            store.create(&device("a")),
            Err(StoreError::AlreadyExists { .. })
        ));
        store.create(&device("b"))?;
        let got: Device = store.fetch("a")?;
        assert_eq!(got, created);
        let names: Vec<String> = store
            .list::<Device>()?
            .into_iter()
            .map(|d| d.metadata.name)
            .collect();
        assert_eq!(names, ["a", "b"]);

        let mut changed = got.clone();
        changed.spec.device_id = Some("00".repeat(16));
        let updated = store.update(&changed)?;
        assert!(updated.metadata.resource_version > got.metadata.resource_version);
        assert_eq!(updated.metadata.uid, got.metadata.uid);
        assert_eq!(updated.spec.device_id, changed.spec.device_id);

        // A writer that read before the update loses.
        let mut stale = got.clone();
        stale.spec.board = "other".into();
        assert!(matches!(
            store.update(&stale),
            Err(StoreError::Conflict { .. })
        ));
        assert!(matches!(
            store.delete::<Device>("a", Some(got.metadata.resource_version)),
            Err(StoreError::Conflict { .. })
        ));
        // modify retries on top of the current version.
        let modified = store.modify::<Device>("a", |d| {
            d.spec.board = "other".into();
            true
        })?;
        assert_eq!(modified.spec.board, "other");
        assert_eq!(modified.spec.device_id, changed.spec.device_id);

        store.delete::<Device>("a", None)?;
        assert!(store.get::<Device>("a")?.is_none());
        assert!(matches!(
            store.delete::<Device>("a", None),
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            store.update(&modified),
            Err(StoreError::NotFound { .. })
        ));

        store.backend().put_blob("ab", b"\0asm")?;
        store.backend().put_blob("ab", b"\0asm")?;
        assert_eq!(store.backend().blob("ab")?.as_deref(), Some(&b"\0asm"[..]));
        assert_eq!(store.backend().blob("cd")?, None);

        let token = TokenRecord {
            id: "0123456789abcdef".into(),
            sha256: [7; 32],
            name: "ci".into(),
            role: Role::ReadOnly,
            gateway: None,
            created_at: 5,
            expires_at: None,
        };
        let gateway_token = TokenRecord {
            id: "fedcba9876543210".into(),
            sha256: [8; 32],
            name: "edge".into(),
            role: Role::Gateway,
            gateway: Some("edge-1".into()),
            created_at: 6,
            expires_at: Some(60_000),
        };
        store.backend().put_token(&token)?;
        store.backend().put_token(&gateway_token)?;
        assert_eq!(
            store.backend().tokens()?,
            vec![token.clone(), gateway_token.clone()]
        );
        store.backend().delete_token(&token.id)?;
        assert_eq!(store.backend().tokens()?, vec![gateway_token.clone()]);
        assert!(matches!(
            store.backend().delete_token(&token.id),
            Err(StoreError::NotFound { .. })
        ));
        store.backend().put_token(&token)?;

        assert!(store.results("u1")?.is_empty());
        let result = crate::model::ExecutionResult {
            device: "a".into(),
            gateway_deployment_id: 3,
            invocation: 1,
            returned: Some(vec![crate::model::WasmValue::I32(42)]),
            trap: None,
            fuel_used: 10,
            duration_us: 20,
            logs: vec!["hi".into()],
            logs_truncated: false,
            received_at: 30,
        };
        store.put_results("u1", std::slice::from_ref(&result))?;
        store.put_results("u1", &[result.clone(), result.clone()])?;
        assert_eq!(store.results("u1")?, vec![result.clone(), result]);
        assert!(store.results("u2")?.is_empty());
        store.backend().delete_results("u1")?;
        assert!(store.results("u1")?.is_empty());
        Ok(())
    }

    /// The names of each page of `limit` devices, walking from the start.
    pub(crate) fn pages(store: &Store, limit: usize) -> Result<Vec<Vec<String>>, StoreError> {
        let mut pages = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page: Vec<String> = store
                .list_page::<Device>(after.as_deref(), limit)?
                .into_iter()
                .map(|d| d.metadata.name)
                .collect();
            assert!(page.len() <= limit);
            let Some(last) = page.last().cloned() else {
                return Ok(pages);
            };
            let full = page.len() == limit;
            pages.push(page);
            if !full {
                return Ok(pages);
            }
            after = Some(last);
        }
    }

    /// Pages in name order, each name once, other kinds apart.
    pub(crate) fn paging(store: &Store) -> Result<(), StoreError> {
        assert!(pages(store, 3)?.is_empty());
        // Created out of order; byte order puts "d10" before "d2".
        for name in ["d5", "d1", "d10", "d2", "d4", "d3", "x", "d-0"] {
            store.create(&device(name))?;
        }
        store.create(&crate::model::Gateway {
            metadata: ObjectMeta {
                name: "d0".into(),
                ..ObjectMeta::default()
            },
            spec: crate::model::GatewaySpec {
                http_endpoint: "http://127.0.0.1:1".into(),
                device_endpoint: "127.0.0.1:2".into(),
            },
            status: Default::default(),
        })?;
        let all: Vec<String> = store
            .list::<Device>()?
            .into_iter()
            .map(|d| d.metadata.name)
            .collect();
        assert_eq!(all, ["d-0", "d1", "d10", "d2", "d3", "d4", "d5", "x"]);
        for limit in 1..=9 {
            let pages = pages(store, limit)?;
            assert_eq!(pages.concat(), all, "limit {limit}");
        }
        assert_eq!(
            pages(store, 3)?,
            [
                vec!["d-0", "d1", "d10"],
                vec!["d2", "d3", "d4"],
                vec!["d5", "x"]
            ]
        );
        // After a name that is not (or no longer) stored.
        let names = |page: Vec<Device>| -> Vec<String> {
            page.into_iter().map(|d| d.metadata.name).collect()
        };
        assert_eq!(names(store.list_page(Some("d11"), 2)?), ["d2", "d3"]);
        assert_eq!(names(store.list_page(Some("x"), 2)?), Vec::<String>::new());
        assert_eq!(names(store.list_page(Some(""), 1)?), ["d-0"]);
        assert_eq!(names(store.list_page(None, usize::MAX)?), all);
        assert!(store.list_page::<Device>(None, 0)?.is_empty());
        let gateways: Vec<String> = store
            .list_page::<crate::model::Gateway>(None, 10)?
            .into_iter()
            .map(|g| g.metadata.name)
            .collect();
        assert_eq!(gateways, ["d0"]);
        // The objects are whole, as `get` gives them.
        let first: Device = store.fetch("d-0")?;
        assert_eq!(store.list_page::<Device>(None, 1)?, vec![first]);
        Ok(())
    }

    #[test]
    fn memory_store_passes_the_backend_tests() -> Result<(), StoreError> {
        crud(&Store::in_memory())?;
        paging(&Store::in_memory())
    }

    #[test]
    fn writes_notify_unless_quiet() -> Result<(), StoreError> {
        let store = Store::in_memory();
        let mut changes = store.subscribe();
        store.quiet().create(&device("a"))?;
        assert!(!changes.has_changed().unwrap_or(true));
        store.create(&device("b"))?;
        assert!(changes.has_changed().unwrap_or(false));
        changes.mark_unchanged();
        Ok(())
    }
}
