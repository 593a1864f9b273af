//! [`KubeStore`]: the [`ResourceStore`] whose objects are Wasmbed's custom
//! resources in a Kubernetes cluster, read and written through its API
//! server with `kube`.
//!
//! The API server does what the trait asks of a backend by itself:
//! resource versions and the conflicts on stale ones, `generation`, the
//! status subresource, finalizers, label selectors, `continue` tokens and
//! watch. This module maps requests and answers, nothing more.

mod error;
mod meta;
mod watch;

use async_trait::async_trait;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams as KubeListParams, PostParams, Preconditions,
};
use kube::discovery::ApiResource;
use kube::{Client, CustomResourceExt as _};
use wasmbed_api::model::Kind;
use wasmbed_api::store::{
    Deletion, ListParams, ObjectList, ResourceStore, StoreError, StoredObject, WatchStream,
};

use crate::{Application, Device, Gateway};
use error::Target;
use meta::{Part, from_kube, to_kube};

/// The namespace Wasmbed's resources live in unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "wasmbed";

/// Wasmbed's resources as custom resources (`Device`, `Application` and
/// `Gateway` in `wasmbed.io/v1alpha1`) in one namespace of a cluster.
///
/// It talks to the API server through `Api<DynamicObject>`, with the
/// [`ApiResource`] of each typed CRD of this crate, rather than through
/// `Api<Device>` and its siblings: the trait hands over `spec` and `status`
/// as JSON and names the kind at run time, and a dynamic object carries
/// that JSON to the server and back untouched, with one code path for the
/// three kinds. Typed objects would decode and re-encode every object
/// through the model's types (dropping, say, a field a newer API server
/// wrote) only for the trait to turn them back into JSON.
///
/// The CRDs must be installed (`deploy/kubernetes/crds/`) with their
/// status subresource: a `replace` sends no status and relies on the
/// server keeping its own.
#[derive(Clone)]
pub struct KubeStore {
    client: Client,
    namespace: String,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl KubeStore {
    /// A store of the resources in `namespace`, through `client`.
    pub fn new(client: Client, namespace: impl Into<String>) -> KubeStore {
        KubeStore {
            client,
            namespace: namespace.into(),
        }
    }

    /// The client it talks through (for Events on the same cluster).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// A store of the resources in `namespace` of the cluster this process
    /// is configured for: the Pod's service account when it runs in a
    /// cluster, else the current context of the kubeconfig (`KUBECONFIG`
    /// or `~/.kube/config`), as `kubectl` finds it. Nothing is asked of
    /// the API server yet: a cluster that cannot be reached fails the
    /// first request with [`StoreError::Unavailable`].
    pub async fn connect(namespace: impl Into<String>) -> Result<KubeStore, StoreError> {
        let client = Client::try_default().await.map_err(|e| {
            StoreError::Unavailable(format!("no Kubernetes configuration to use: {e}"))
        })?;
        Ok(KubeStore::new(client, namespace))
    }

    /// The namespace the store reads and writes.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn api(&self, kind: Kind) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &api_resource(kind))
    }

    fn body(&self, kind: Kind, object: &StoredObject, part: Part) -> Result<Vec<u8>, StoreError> {
        let body = to_kube(&api_resource(kind), &self.namespace, object, part);
        serde_json::to_vec(&body).map_err(|e| StoreError::Invalid(e.to_string()))
    }
}

/// The custom resource of `kind`, as the CRDs of this crate define it.
pub fn api_resource(kind: Kind) -> ApiResource {
    match kind {
        Kind::Device => Device::api_resource(),
        Kind::Application => Application::api_resource(),
        Kind::Gateway => Gateway::api_resource(),
    }
}

/// A label selector of equality terms, `k=v,k2=v2`. Refuses a key or a
/// value that would change the selector's meaning (no valid label has
/// one); the API server checks the rest of the label syntax.
fn label_selector(params: &ListParams) -> Result<Option<String>, StoreError> {
    if params.labels.is_empty() {
        return Ok(None);
    }
    let mut terms = Vec::with_capacity(params.labels.len());
    for (key, value) in &params.labels {
        let special = |text: &str| text.contains([',', '=', '!', '(', ')', ' ']);
        if key.is_empty() || special(key) || special(value) {
            return Err(StoreError::Invalid(format!(
                "{key:?}={value:?} is not a label a selector can match"
            )));
        }
        terms.push(format!("{key}={value}"));
    }
    Ok(Some(terms.join(",")))
}

#[async_trait]
impl ResourceStore for KubeStore {
    async fn get(&self, kind: Kind, name: &str) -> Result<Option<StoredObject>, StoreError> {
        match self.api(kind).get(name).await {
            Ok(object) => from_kube(object).map(Some),
            Err(kube::Error::Api(response)) if response.code == 404 => Ok(None),
            Err(e) => Err(error::from_kube(Target::Object(kind, name), e)),
        }
    }

    async fn list(
        &self,
        kind: Kind,
        params: &ListParams,
    ) -> Result<ObjectList<StoredObject>, StoreError> {
        let request = KubeListParams {
            label_selector: label_selector(params)?,
            limit: params
                .limit
                .map(|limit| u32::try_from(limit).unwrap_or(u32::MAX)),
            continue_token: params.continue_token.clone(),
            ..KubeListParams::default()
        };
        let list = self
            .api(kind)
            .list(&request)
            .await
            .map_err(|e| error::from_kube(Target::Collection(kind), e))?;
        Ok(ObjectList {
            items: list
                .items
                .into_iter()
                .map(from_kube)
                .collect::<Result<_, _>>()?,
            continue_token: list.metadata.continue_.filter(|token| !token.is_empty()),
            resource_version: list.metadata.resource_version.unwrap_or_default(),
        })
    }

    /// POSTs the object; the API server drops a status on create, so a
    /// status is then written with a PUT to `/status`. Should that write
    /// fail, the object exists without its status and the error is
    /// returned.
    async fn create(&self, kind: Kind, object: StoredObject) -> Result<StoredObject, StoreError> {
        let name = object.metadata.name.clone();
        let api = self.api(kind);
        let created = api
            .create(
                &PostParams::default(),
                &to_kube(&api_resource(kind), &self.namespace, &object, Part::Create),
            )
            .await
            .map_err(|e| error::from_kube(Target::New(kind, &name), e))?;
        let mut created = from_kube(created)?;
        if object.status.is_null() {
            return Ok(created);
        }
        created.status = object.status;
        self.replace_status(kind, created).await
    }

    async fn replace(&self, kind: Kind, object: StoredObject) -> Result<StoredObject, StoreError> {
        let name = &object.metadata.name;
        let replaced = self
            .api(kind)
            .replace(
                name,
                &PostParams::default(),
                &to_kube(&api_resource(kind), &self.namespace, &object, Part::Spec),
            )
            .await
            .map_err(|e| error::from_kube(Target::Object(kind, name), e))?;
        from_kube(replaced)
    }

    async fn replace_status(
        &self,
        kind: Kind,
        object: StoredObject,
    ) -> Result<StoredObject, StoreError> {
        let name = &object.metadata.name;
        let replaced = self
            .api(kind)
            .replace_status(
                name,
                &PostParams::default(),
                self.body(kind, &object, Part::Status)?,
            )
            .await
            .map_err(|e| error::from_kube(Target::Object(kind, name), e))?;
        from_kube(replaced)
    }

    /// A `200` with the object still there, marked and with finalizers, is
    /// [`Deletion::Pending`]; a `Status`, or the object as it was last
    /// without finalizers, is [`Deletion::Deleted`].
    async fn delete(
        &self,
        kind: Kind,
        name: &str,
        resource_version: Option<&str>,
    ) -> Result<Deletion<StoredObject>, StoreError> {
        let options = DeleteParams {
            preconditions: resource_version.map(|version| Preconditions {
                resource_version: Some(version.to_owned()),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        let answer = self
            .api(kind)
            .delete(name, &options)
            .await
            .map_err(|e| error::from_kube(Target::Object(kind, name), e))?;
        match answer {
            either::Either::Left(object) => {
                let object = from_kube(object)?;
                if object.metadata.deleting() && !object.metadata.finalizers.is_empty() {
                    Ok(Deletion::Pending(object))
                } else {
                    Ok(Deletion::Deleted)
                }
            }
            either::Either::Right(_status) => Ok(Deletion::Deleted),
        }
    }

    /// Watches from `resource_version`, or from now: the version of a
    /// one-item list. Bookmarks are asked for and only move the version a
    /// watch resumes from: when the API server ends a watch (it does
    /// every few minutes) the stream goes on with a new one from the last
    /// version seen. A `410 Gone` ends it with [`StoreError::Expired`].
    async fn watch(
        &self,
        kind: Kind,
        resource_version: Option<&str>,
    ) -> Result<WatchStream, StoreError> {
        let from = match resource_version {
            Some(version) => version.to_owned(),
            None => {
                let params = ListParams {
                    limit: Some(1),
                    ..ListParams::default()
                };
                self.list(kind, &params).await?.resource_version
            }
        };
        watch::watch(self.api(kind), kind, from).await
    }
}
