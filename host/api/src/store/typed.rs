//! [`Store`]: the five stores together, with typed access.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;

use super::shared::SharedWatches;
use super::{
    BlobStore, Deletion, EnrollmentStore, ListParams, ObjectList, ResourceStore, ResultStore,
    SqliteStore, StoreError, StoredObject, TokenStore, WatchEvent, WatchStream,
};
use crate::model::{ExecutionResult, Kind, Object};

/// `object` as the store keeps it.
pub fn to_stored<T: Object>(object: &T) -> Result<StoredObject, StoreError> {
    let value = serde_json::to_value(object)?;
    let part = |name: &str| value.get(name).cloned().unwrap_or(serde_json::Value::Null);
    Ok(StoredObject {
        metadata: object.metadata().clone(),
        spec: part("spec"),
        status: part("status"),
    })
}

/// The typed object `stored` holds.
pub fn from_stored<T: Object>(stored: StoredObject) -> Result<T, StoreError> {
    let mut value = serde_json::Map::new();
    value.insert("metadata".into(), serde_json::to_value(stored.metadata)?);
    value.insert("spec".into(), stored.spec);
    if !stored.status.is_null() {
        value.insert("status".into(), stored.status);
    }
    Ok(serde_json::from_value(value.into())?)
}

/// `object` as stored, its status left out (null) when it is the default
/// one: a default status and none are the same status.
fn stored_with_status<T: Object>(object: &T) -> Result<StoredObject, StoreError> {
    let mut stored = to_stored(object)?;
    if object.status_is_default() {
        stored.status = serde_json::Value::Null;
    }
    Ok(stored)
}

/// The resource versions one writer made, so that its own watch can tell
/// its writes from others' ([`Store::quiet`]; the controller runtime
/// skips them).
#[derive(Debug, Default)]
pub struct OwnWrites {
    versions: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Versions remembered at most: a writer whose watch is down for long
/// forgets the oldest rather than grow (it is woken once more, no harm).
const OWN_WRITES_KEPT: usize = 4096;

impl OwnWrites {
    fn insert(&self, version: &str) {
        let mut versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        if versions.len() >= OWN_WRITES_KEPT {
            versions.clear();
        }
        versions.insert(version.to_owned());
    }

    /// Whether `version` was this writer's, forgetting it.
    pub fn take(&self, version: &str) -> bool {
        self.versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(version)
    }
}

/// The five stores, with typed access. Counts its resource reads (gets
/// and list pages), which is what a watcher saves.
#[derive(Debug, Clone)]
pub struct Store {
    resources: Arc<dyn ResourceStore>,
    blobs: Arc<dyn BlobStore>,
    tokens: Arc<dyn TokenStore>,
    results: Arc<dyn ResultStore>,
    enrollments: Arc<dyn EnrollmentStore>,
    reads: Arc<AtomicU64>,
    own: Option<Arc<OwnWrites>>,
    shared: Arc<SharedWatches>,
}

impl Store {
    pub fn new(
        resources: Arc<dyn ResourceStore>,
        blobs: Arc<dyn BlobStore>,
        tokens: Arc<dyn TokenStore>,
        results: Arc<dyn ResultStore>,
        enrollments: Arc<dyn EnrollmentStore>,
    ) -> Store {
        Store {
            resources,
            blobs,
            tokens,
            results,
            enrollments,
            reads: Arc::new(AtomicU64::new(0)),
            own: None,
            shared: Arc::new(SharedWatches::default()),
        }
    }

    /// The same store, whose writes are remembered in the [`OwnWrites`]
    /// given with it: a writer that also watches (the controller) skips
    /// the events of its own writes.
    pub fn quiet(&self) -> (Store, Arc<OwnWrites>) {
        let own = Arc::new(OwnWrites::default());
        let store = Store {
            own: Some(own.clone()),
            ..self.clone()
        };
        (store, own)
    }

    /// Remembers `written` as this writer's own, unless the write changed
    /// nothing (its version is still `read_at`, the version written from):
    /// that version may be someone else's write whose event is yet to come.
    fn wrote<T: Object>(&self, read_at: Option<&str>, written: T) -> T {
        let version = &written.metadata().resource_version;
        if let Some(own) = &self.own
            && read_at != Some(version.as_str())
        {
            own.insert(version);
        }
        written
    }

    /// Resources in `resources`; blobs, tokens, results and enrollments in
    /// `side` (SQLite, or files shared by replicas).
    pub fn beside<S>(resources: Arc<dyn ResourceStore>, side: Arc<S>) -> Store
    where
        S: BlobStore + TokenStore + ResultStore + EnrollmentStore + 'static,
    {
        Store::new(resources, side.clone(), side.clone(), side.clone(), side)
    }

    /// Everything in one SQLite database.
    pub fn sqlite(store: SqliteStore) -> Store {
        let store = Arc::new(store);
        Store::beside(store.clone(), store)
    }

    /// Everything in a private SQLite database in memory.
    pub fn in_memory() -> Store {
        Store::sqlite(SqliteStore::in_memory().expect("an in-memory SQLite database opens"))
    }

    pub fn resources(&self) -> &dyn ResourceStore {
        self.resources.as_ref()
    }

    pub fn blobs(&self) -> &dyn BlobStore {
        self.blobs.as_ref()
    }

    pub fn tokens(&self) -> &dyn TokenStore {
        self.tokens.as_ref()
    }

    /// The fleet's enrollments, pre-authorised keys and pairing window.
    pub fn enrollments(&self) -> &dyn EnrollmentStore {
        self.enrollments.as_ref()
    }

    /// Resource reads (gets and list pages) through this store so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    pub async fn get<T: Object>(&self, name: &str) -> Result<Option<T>, StoreError> {
        self.read();
        self.resources
            .get(T::KIND, name)
            .await?
            .map(from_stored)
            .transpose()
    }

    /// Like [`get`](Store::get), absence is an error.
    pub async fn fetch<T: Object>(&self, name: &str) -> Result<T, StoreError> {
        self.get(name).await?.ok_or_else(|| StoreError::NotFound {
            kind: T::KIND.as_str(),
            name: name.to_owned(),
        })
    }

    /// One page of a list.
    pub async fn list_page<T: Object>(
        &self,
        params: &ListParams,
    ) -> Result<ObjectList<T>, StoreError> {
        self.read();
        let page = self.resources.list(T::KIND, params).await?;
        Ok(ObjectList {
            items: page
                .items
                .into_iter()
                .map(from_stored)
                .collect::<Result<_, _>>()?,
            continue_token: page.continue_token,
            resource_version: page.resource_version,
        })
    }

    /// Every object of `kind`, by name, untyped.
    pub async fn list_kind(&self, kind: Kind) -> Result<Vec<StoredObject>, StoreError> {
        let mut params = ListParams::all();
        let mut all = Vec::new();
        loop {
            self.read();
            let mut page = self.resources.list(kind, &params).await?;
            all.append(&mut page.items);
            match page.continue_token {
                Some(token) => params.continue_token = Some(token),
                None => return Ok(all),
            }
        }
    }

    /// Every object of kind `T`, by name.
    pub async fn list<T: Object>(&self) -> Result<Vec<T>, StoreError> {
        Ok(self.list_all(ListParams::all()).await?.items)
    }

    /// Every object matching `params` (its `limit` is the page size),
    /// following `continue` tokens to the end.
    pub async fn list_all<T: Object>(
        &self,
        mut params: ListParams,
    ) -> Result<ObjectList<T>, StoreError> {
        let mut all = self.list_page::<T>(&params).await?;
        while let Some(token) = all.continue_token.take() {
            params.continue_token = Some(token);
            let mut page = self.list_page::<T>(&params).await?;
            all.items.append(&mut page.items);
            all.continue_token = page.continue_token;
        }
        Ok(all)
    }

    pub async fn create<T: Object>(&self, object: &T) -> Result<T, StoreError> {
        let stored = stored_with_status(object)?;
        let created = from_stored(self.resources.create(T::KIND, stored).await?)?;
        Ok(self.wrote(None, created))
    }

    /// Replaces labels, finalizers and spec at the object's version.
    pub async fn replace<T: Object>(&self, object: &T) -> Result<T, StoreError> {
        let replaced = from_stored(self.resources.replace(T::KIND, to_stored(object)?).await?)?;
        Ok(self.wrote(Some(&object.metadata().resource_version), replaced))
    }

    /// Replaces the status at the object's version.
    pub async fn replace_status<T: Object>(&self, object: &T) -> Result<T, StoreError> {
        let replaced = from_stored(
            self.resources
                .replace_status(T::KIND, stored_with_status(object)?)
                .await?,
        )?;
        Ok(self.wrote(Some(&object.metadata().resource_version), replaced))
    }

    /// Reads, changes and writes back labels, finalizers and spec, again on
    /// conflicts; `change` returns whether it changed anything (nothing is
    /// written if not).
    pub async fn modify<T: Object>(
        &self,
        name: &str,
        change: impl FnMut(&mut T) -> bool,
    ) -> Result<T, StoreError> {
        self.modify_part(name, change, false).await
    }

    /// Like [`modify`](Store::modify), for the status.
    pub async fn modify_status<T: Object>(
        &self,
        name: &str,
        change: impl FnMut(&mut T) -> bool,
    ) -> Result<T, StoreError> {
        self.modify_part(name, change, true).await
    }

    async fn modify_part<T: Object>(
        &self,
        name: &str,
        mut change: impl FnMut(&mut T) -> bool,
        status: bool,
    ) -> Result<T, StoreError> {
        loop {
            let mut object: T = self.fetch(name).await?;
            if !change(&mut object) {
                return Ok(object);
            }
            let written = if status {
                self.replace_status(&object).await
            } else {
                self.replace(&object).await
            };
            match written {
                Err(StoreError::Conflict { .. }) => continue,
                other => return other,
            }
        }
    }

    /// Deletes (or, with finalizers, marks) an object.
    pub async fn delete<T: Object>(
        &self,
        name: &str,
        resource_version: Option<&str>,
    ) -> Result<Deletion<T>, StoreError> {
        Ok(
            match self
                .resources
                .delete(T::KIND, name, resource_version)
                .await?
            {
                Deletion::Deleted => Deletion::Deleted,
                Deletion::Pending(stored) => {
                    Deletion::Pending(self.wrote(resource_version, from_stored(stored)?))
                }
            },
        )
    }

    /// The changes of `kind` after `resource_version` (from now without
    /// one), untyped.
    pub async fn watch_kind(
        &self,
        kind: Kind,
        resource_version: Option<&str>,
    ) -> Result<WatchStream, StoreError> {
        match resource_version {
            // Shared: counted once, when the backend watch opens.
            None => {
                self.shared
                    .watch(&self.resources, kind, || self.read())
                    .await
            }
            Some(version) => {
                self.read();
                self.resources.watch(kind, Some(version)).await
            }
        }
    }

    /// Backend watches from now running for this store's watchers.
    pub fn shared_watches(&self) -> usize {
        self.shared.running()
    }

    /// The changes of kind `T` after `resource_version` (from now without
    /// one), typed.
    pub async fn watch<T: Object>(
        &self,
        resource_version: Option<&str>,
    ) -> Result<BoxStream<'static, Result<WatchEvent<T>, StoreError>>, StoreError> {
        let events = self.watch_kind(T::KIND, resource_version).await?;
        Ok(events
            .map(|event| event.and_then(|e| e.try_map(from_stored)))
            .boxed())
    }

    pub async fn put_blob(&self, sha256: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.blobs.put_blob(sha256, bytes).await
    }

    pub async fn blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.blobs.blob(sha256).await
    }

    /// The execution results kept for an application (by `uid`), newest
    /// first.
    pub async fn results(&self, application_uid: &str) -> Result<Vec<ExecutionResult>, StoreError> {
        match self.results.results(application_uid).await? {
            Some(json) => Ok(serde_json::from_str(&json)?),
            None => Ok(Vec::new()),
        }
    }

    /// Replaces an application's execution results.
    pub async fn put_results(
        &self,
        application_uid: &str,
        results: &[ExecutionResult],
    ) -> Result<(), StoreError> {
        self.results
            .put_results(application_uid, &serde_json::to_string(results)?)
            .await
    }

    pub async fn delete_results(&self, application_uid: &str) -> Result<(), StoreError> {
        self.results.delete_results(application_uid).await
    }
}
