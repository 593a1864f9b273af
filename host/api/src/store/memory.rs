//! The in-memory backend, for tests and throwaway servers.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use super::{ResourceStore, StoreError, StoredObject, TokenRecord, new_uid};
use crate::model::{Kind, now_ms};

#[derive(Debug, Default)]
struct Inner {
    objects: HashMap<Kind, BTreeMap<String, StoredObject>>,
    blobs: HashMap<String, Vec<u8>>,
    tokens: Vec<TokenRecord>,
    results: HashMap<String, String>,
    version: u64,
}

/// Everything in a mutex; gone when dropped.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn not_found(kind: Kind, name: &str) -> StoreError {
    StoreError::NotFound {
        kind: kind.as_str(),
        name: name.to_owned(),
    }
}

fn conflict(kind: Kind, name: &str, expected: u64) -> StoreError {
    StoreError::Conflict {
        kind: kind.as_str(),
        name: name.to_owned(),
        expected,
    }
}

impl ResourceStore for MemoryStore {
    fn get(&self, kind: Kind, name: &str) -> Result<Option<StoredObject>, StoreError> {
        Ok(self
            .lock()
            .objects
            .get(&kind)
            .and_then(|m| m.get(name))
            .cloned())
    }

    fn list(&self, kind: Kind) -> Result<Vec<StoredObject>, StoreError> {
        Ok(self
            .lock()
            .objects
            .get(&kind)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default())
    }

    fn list_page(
        &self,
        kind: Kind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredObject>, StoreError> {
        let inner = self.lock();
        let Some(objects) = inner.objects.get(&kind) else {
            return Ok(Vec::new());
        };
        let from = match after {
            Some(name) => Bound::Excluded(name),
            None => Bound::Unbounded,
        };
        Ok(objects
            .range::<str, _>((from, Bound::Unbounded))
            .take(limit)
            .map(|(_, object)| object.clone())
            .collect())
    }

    fn create(&self, kind: Kind, mut object: StoredObject) -> Result<StoredObject, StoreError> {
        let mut inner = self.lock();
        inner.version += 1;
        let version = inner.version;
        let objects = inner.objects.entry(kind).or_default();
        if objects.contains_key(&object.metadata.name) {
            return Err(StoreError::AlreadyExists {
                kind: kind.as_str(),
                name: object.metadata.name,
            });
        }
        object.metadata.uid = new_uid();
        object.metadata.created_at = now_ms();
        object.metadata.resource_version = version;
        objects.insert(object.metadata.name.clone(), object.clone());
        Ok(object)
    }

    fn update(&self, kind: Kind, mut object: StoredObject) -> Result<StoredObject, StoreError> {
        let mut inner = self.lock();
        inner.version += 1;
        let version = inner.version;
        let name = object.metadata.name.clone();
        let current = inner
            .objects
            .get_mut(&kind)
            .and_then(|m| m.get_mut(&name))
            .ok_or_else(|| not_found(kind, &name))?;
        if current.metadata.resource_version != object.metadata.resource_version {
            return Err(conflict(kind, &name, object.metadata.resource_version));
        }
        object.metadata.uid = current.metadata.uid.clone();
        object.metadata.created_at = current.metadata.created_at;
        object.metadata.resource_version = version;
        *current = object.clone();
        Ok(object)
    }

    fn delete(
        &self,
        kind: Kind,
        name: &str,
        resource_version: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let objects = inner.objects.entry(kind).or_default();
        let current = objects.get(name).ok_or_else(|| not_found(kind, name))?;
        if let Some(expected) = resource_version {
            if current.metadata.resource_version != expected {
                return Err(conflict(kind, name, expected));
            }
        }
        objects.remove(name);
        Ok(())
    }

    fn put_blob(&self, sha256: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.lock()
            .blobs
            .entry(sha256.to_owned())
            .or_insert_with(|| bytes.to_vec());
        Ok(())
    }

    fn blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().blobs.get(sha256).cloned())
    }

    fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.lock().tokens.push(token.clone());
        Ok(())
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        Ok(self.lock().tokens.clone())
    }

    fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let before = inner.tokens.len();
        inner.tokens.retain(|t| t.id != id);
        if inner.tokens.len() == before {
            return Err(StoreError::NotFound {
                kind: "Token",
                name: id.to_owned(),
            });
        }
        Ok(())
    }

    fn put_results(&self, application_uid: &str, json: &str) -> Result<(), StoreError> {
        self.lock()
            .results
            .insert(application_uid.to_owned(), json.to_owned());
        Ok(())
    }

    fn results(&self, application_uid: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock().results.get(application_uid).cloned())
    }

    fn delete_results(&self, application_uid: &str) -> Result<(), StoreError> {
        self.lock().results.remove(application_uid);
        Ok(())
    }
}
