//! Where resources, module blobs, token hashes and execution results are
//! kept.
//!
//! Resources follow the Kubernetes model, so that one interface,
//! [`ResourceStore`], has two backends: [`SqliteStore`] (embedded, the
//! default) and the Kubernetes API server (`wasmbed-k8s`). Lists are paged
//! with opaque `continue` tokens and filtered by label selectors in the
//! backend; [`watch`](ResourceStore::watch) streams changes from a resource
//! version; status is written apart from spec
//! ([`replace_status`](ResourceStore::replace_status)); `generation` counts
//! spec changes; deletion waits for finalizers.
//!
//! What does not belong in an object store has traits of its own:
//! [`BlobStore`] (modules, content-addressed), [`TokenStore`] (token
//! hashes), [`ResultStore`] (execution results, bounded per application
//! and churning too fast for etcd) and [`EnrollmentStore`] (the fleet's
//! enrolled keys, pre-authorised keys and pairing window).
//! [`SqliteStore`] implements all five; in a cluster the last four live in a SQLite file on the API server's
//! volume (one replica), or as files in a directory that replicas share
//! ([`DirStore`], on a ReadWriteMany volume).
//!
//! [`Store`] puts the five together with typed access.

mod dir;
mod hub;
mod shared;
mod sqlite;
mod typed;

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::model::{Kind, ObjectMeta};

pub use dir::DirStore;
use hub::WatchHub;
pub use sqlite::SqliteStore;
pub use typed::{OwnWrites, Store, from_stored, to_stored};

/// What went wrong, by whose fault; no backend's own error type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {name} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} {name} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    /// The write carried a resource version that is no longer current.
    #[error("{kind} {name} was changed since the version read; read it again")]
    Conflict { kind: &'static str, name: String },
    /// The request itself is wrong (a malformed `continue` token, an object
    /// the backend refuses).
    #[error("{0}")]
    Invalid(String),
    /// A watch or a `continue` token refers to a version the store no
    /// longer has: list again.
    #[error("resource version {0} is too old; list again")]
    Expired(String),
    /// The backend cannot serve now (the database, the API server); the
    /// request may succeed later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// What the backend holds does not decode.
    #[error("stored object does not decode: {0}")]
    Corrupt(String),
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// A resource with its kind-specific parts as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    pub metadata: ObjectMeta,
    pub spec: serde_json::Value,
    pub status: serde_json::Value,
}

/// Which objects of a kind a list gives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListParams {
    /// Only objects with every one of these labels.
    pub labels: BTreeMap<String, String>,
    /// At most this many; `None`: all.
    pub limit: Option<usize>,
    /// The `continue` token of the previous page.
    pub continue_token: Option<String>,
}

impl ListParams {
    /// Everything.
    pub fn all() -> ListParams {
        ListParams::default()
    }

    /// Objects with every label of `labels`.
    pub fn labels(labels: BTreeMap<String, String>) -> ListParams {
        ListParams {
            labels,
            ..ListParams::default()
        }
    }
}

/// Whether `labels` holds every pair of `selector`.
pub fn has_labels(labels: &BTreeMap<String, String>, selector: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectList<T> {
    /// By name.
    pub items: Vec<T>,
    /// The token of the next page: `None` when this page ends the list.
    pub continue_token: Option<String>,
    /// The version of the store the list was read at: a watch from it
    /// misses nothing.
    pub resource_version: String,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent<T> {
    Added(T),
    Modified(T),
    /// The object as it was last.
    Deleted(T),
}

impl<T> WatchEvent<T> {
    pub fn object(&self) -> &T {
        match self {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o,
        }
    }

    fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<WatchEvent<U>, E> {
        Ok(match self {
            WatchEvent::Added(o) => WatchEvent::Added(f(o)?),
            WatchEvent::Modified(o) => WatchEvent::Modified(f(o)?),
            WatchEvent::Deleted(o) => WatchEvent::Deleted(f(o)?),
        })
    }
}

/// Changes of one kind, in order. An `Err` ends it: a backend that fell
/// behind says [`StoreError::Expired`], and the watcher lists again.
pub type WatchStream = BoxStream<'static, Result<WatchEvent<StoredObject>, StoreError>>;

/// What a delete did.
#[derive(Debug, Clone, PartialEq)]
pub enum Deletion<T> {
    /// The object is gone.
    Deleted,
    /// The object has finalizers: it is marked (`deletion_timestamp`) and
    /// goes when the last one is removed.
    Pending(T),
}

/// A backend for resources. Writes are durable once they return.
#[async_trait]
pub trait ResourceStore: Send + Sync + fmt::Debug {
    async fn get(&self, kind: Kind, name: &str) -> Result<Option<StoredObject>, StoreError>;
    /// One page of the objects of `kind` that match `params`, by name.
    async fn list(
        &self,
        kind: Kind,
        params: &ListParams,
    ) -> Result<ObjectList<StoredObject>, StoreError>;
    /// Stores a new object. The store assigns `uid`, `created_at`,
    /// `resource_version` and `generation` (1) and clears
    /// `deletion_timestamp`; the rest is kept, status included.
    async fn create(&self, kind: Kind, object: StoredObject) -> Result<StoredObject, StoreError>;
    /// Replaces labels, finalizers and spec if `resource_version` is still
    /// the stored one; the status is kept as stored. `generation` grows when
    /// the spec changed. Removing the last finalizer of an object being
    /// deleted deletes it (and gives it back as it was last).
    async fn replace(&self, kind: Kind, object: StoredObject) -> Result<StoredObject, StoreError>;
    /// Replaces the status only, if `resource_version` is still the stored
    /// one.
    async fn replace_status(
        &self,
        kind: Kind,
        object: StoredObject,
    ) -> Result<StoredObject, StoreError>;
    /// Deletes an object (only at `resource_version`, if given). One with
    /// finalizers is marked and kept until they are removed.
    async fn delete(
        &self,
        kind: Kind,
        name: &str,
        resource_version: Option<&str>,
    ) -> Result<Deletion<StoredObject>, StoreError>;
    /// The changes of `kind` after `resource_version` (from now without
    /// one).
    async fn watch(
        &self,
        kind: Kind,
        resource_version: Option<&str>,
    ) -> Result<WatchStream, StoreError>;
}

/// Module bytes by their SHA-256 (hex).
#[async_trait]
pub trait BlobStore: Send + Sync + fmt::Debug {
    /// Keeps `bytes` under `sha256`; putting the same blob again is fine.
    async fn put_blob(&self, sha256: &str, bytes: &[u8]) -> Result<(), StoreError>;
    async fn blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

/// API tokens, as hashes.
#[async_trait]
pub trait TokenStore: Send + Sync + fmt::Debug {
    async fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    /// Every token, oldest first.
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// Forgets the token with public id `id`.
    async fn delete_token(&self, id: &str) -> Result<(), StoreError>;
}

/// The execution results kept per application (by `uid`).
#[async_trait]
pub trait ResultStore: Send + Sync + fmt::Debug {
    /// Replaces an application's results, a JSON array.
    async fn put_results(&self, application_uid: &str, json: &str) -> Result<(), StoreError>;
    async fn results(&self, application_uid: &str) -> Result<Option<String>, StoreError>;
    async fn delete_results(&self, application_uid: &str) -> Result<(), StoreError>;
}

/// A device key enrolled through any gateway of the fleet: one id per key,
/// whichever gateway the device enrolls (or enrolls again) through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentRecord {
    /// The device's SEC1 public key, lowercase hex.
    pub public_key: String,
    /// The device's id, 32 lowercase hex digits.
    pub device_id: String,
    pub board: String,
    pub firmware_version: String,
    /// Milliseconds since the Unix epoch.
    pub enrolled_at: u64,
}

/// The fleet-wide pairing window: while open, devices with the claim
/// certificate may enroll through any gateway that forwards enrollments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PairingWindow {
    pub open: bool,
    /// When an open window closes by itself (milliseconds since the Unix
    /// epoch); `None`: open until closed.
    pub until: Option<u64>,
}

impl PairingWindow {
    /// Whether devices may enroll at `now` (milliseconds since the epoch).
    pub fn is_open_at(&self, now: u64) -> bool {
        self.open && self.until.is_none_or(|until| now < until)
    }
}

/// The fleet's enrollments, pre-authorised keys and pairing window, which
/// every API server replica and so every gateway sees alike.
#[async_trait]
pub trait EnrollmentStore: Send + Sync + fmt::Debug {
    /// The enrollment of `public_key` (lowercase hex), if it has one.
    async fn enrollment(&self, public_key: &str) -> Result<Option<EnrollmentRecord>, StoreError>;
    /// Records `record` unless its key is enrolled already, and returns
    /// the enrollment stored: `record`, or the one that was there first
    /// (two gateways, or two replicas, enrolling one key at once agree on
    /// one id). The key's pre-authorisation is used up.
    async fn enroll(&self, record: &EnrollmentRecord) -> Result<EnrollmentRecord, StoreError>;
    /// Lets `public_key` enroll while pairing is closed (once).
    async fn preauthorize(&self, public_key: &str, at: u64) -> Result<(), StoreError>;
    async fn is_preauthorized(&self, public_key: &str) -> Result<bool, StoreError>;
    /// The pairing window; closed when never set.
    async fn pairing(&self) -> Result<PairingWindow, StoreError>;
    async fn set_pairing(&self, window: PairingWindow) -> Result<(), StoreError>;
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

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(test)]
mod enrollment_tests;
