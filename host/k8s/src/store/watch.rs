//! A [`WatchStream`] over the API server's watches: one watch request at a
//! time, a new one from the last version seen when the server ends the
//! current one, and the end at the first error.

use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use kube::api::{Api, DynamicObject, WatchParams};
use kube::core::WatchEvent as KubeEvent;
use wasmbed_api::model::Kind;
use wasmbed_api::store::{StoreError, StoredObject, WatchEvent, WatchStream};

use super::error::{self, Target};
use super::meta::from_kube;

/// How long to wait before watching again after a watch that the server
/// ended without sending anything, so that a server that closes watches
/// at once is not asked again in a loop.
const QUIET_RESUME_PAUSE: Duration = Duration::from_secs(1);

type Events = BoxStream<'static, kube::Result<KubeEvent<DynamicObject>>>;

struct Watch {
    api: Api<DynamicObject>,
    kind: Kind,
    /// The version of the last event or bookmark: where a new watch
    /// starts.
    version: String,
    events: Events,
    /// Whether the current watch request sent anything yet.
    heard: bool,
}

/// The changes of `kind` after version `from`. The first watch request is
/// made before this returns; a refusal of it (RBAC, an expired version) is
/// the stream's first and last item, as kube reads a watch's answer as
/// events whatever its status.
pub(super) async fn watch(
    api: Api<DynamicObject>,
    kind: Kind,
    from: String,
) -> Result<WatchStream, StoreError> {
    let events = open(&api, kind, &from).await?;
    let watch = Watch {
        api,
        kind,
        version: from,
        events,
        heard: false,
    };
    Ok(futures_util::stream::unfold(Some(watch), next).boxed())
}

async fn open(api: &Api<DynamicObject>, kind: Kind, from: &str) -> Result<Events, StoreError> {
    // With bookmarks (kube's default), which only move `version`.
    let params = WatchParams::default();
    match api.watch(&params, from).await {
        Ok(events) => Ok(events.boxed()),
        Err(e) => Err(failure(kind, from, e)),
    }
}

/// A watch's failure; `410 Gone` says the version it started from (or
/// last saw) is too old.
fn failure(kind: Kind, version: &str, error: kube::Error) -> StoreError {
    match error {
        kube::Error::Api(response) if response.code == 410 => {
            StoreError::Expired(version.to_owned())
        }
        other => error::from_kube(Target::Collection(kind), other),
    }
}

type Item = Result<WatchEvent<StoredObject>, StoreError>;

/// The next change, and the watch to go on with (`None` after an error).
async fn next(watch: Option<Watch>) -> Option<(Item, Option<Watch>)> {
    let mut watch = watch?;
    loop {
        let Some(answer) = watch.events.next().await else {
            if !watch.heard {
                tokio::time::sleep(QUIET_RESUME_PAUSE).await;
            }
            match open(&watch.api, watch.kind, &watch.version).await {
                Ok(events) => {
                    watch.events = events;
                    watch.heard = false;
                    continue;
                }
                Err(e) => return Some((Err(e), None)),
            }
        };
        watch.heard = true;
        let event = match answer {
            Ok(KubeEvent::Added(object)) => WatchEvent::Added(object),
            Ok(KubeEvent::Modified(object)) => WatchEvent::Modified(object),
            Ok(KubeEvent::Deleted(object)) => WatchEvent::Deleted(object),
            Ok(KubeEvent::Bookmark(bookmark)) => {
                watch.version = bookmark.metadata.resource_version;
                continue;
            }
            // An `ERROR` event, or (kube reads a watch's body before its
            // status) a refusal of the watch request itself.
            Ok(KubeEvent::Error(response)) => {
                let error = failure(watch.kind, &watch.version, kube::Error::Api(response));
                return Some((Err(error), None));
            }
            Err(e) => return Some((Err(failure(watch.kind, &watch.version, e)), None)),
        };
        return match decode(event) {
            Ok(event) => {
                watch.version = event.object().metadata.resource_version.clone();
                Some((Ok(event), Some(watch)))
            }
            Err(e) => Some((Err(e), None)),
        };
    }
}

fn decode(event: WatchEvent<DynamicObject>) -> Result<WatchEvent<StoredObject>, StoreError> {
    Ok(match event {
        WatchEvent::Added(object) => WatchEvent::Added(from_kube(object)?),
        WatchEvent::Modified(object) => WatchEvent::Modified(from_kube(object)?),
        WatchEvent::Deleted(object) => WatchEvent::Deleted(from_kube(object)?),
    })
}
