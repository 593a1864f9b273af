//! Watches "from now" shared: one watch of the backend per kind, however
//! many dashboards, controllers and loops in this process watch it. On
//! Kubernetes each backend watch is a long request to the API server (and
//! a list to find "now"); here they cost one per kind.
//!
//! A watcher that falls behind, or a backend watch that ends, ends the
//! watchers' streams with [`StoreError::Expired`]: they watch again, which
//! opens a new backend watch if none runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt as _;
use tokio::sync::broadcast;

use super::{ResourceStore, StoreError, StoredObject, WatchEvent, WatchStream};
use crate::model::Kind;

/// Events queued for a watcher before it is told to watch again.
const QUEUED: usize = 1024;

type Shared = Result<WatchEvent<StoredObject>, StoreError>;

/// The backend watches running, one per kind.
#[derive(Debug, Default)]
pub(crate) struct SharedWatches {
    running: Mutex<Vec<Running>>,
}

/// One backend watch and its watchers.
#[derive(Debug)]
struct Running {
    kind: Kind,
    sender: broadcast::Sender<Shared>,
    /// Cleared by [`forward`] when it stops: no watcher joins it then.
    alive: Arc<AtomicBool>,
}

impl Running {
    fn serves(&self, kind: Kind) -> bool {
        self.kind == kind && self.alive.load(Ordering::Acquire)
    }
}

impl SharedWatches {
    /// The changes of `kind` from now, through the backend watch of this
    /// kind (opened, and `opened` called, if none runs).
    pub(crate) async fn watch(
        &self,
        backend: &Arc<dyn ResourceStore>,
        kind: Kind,
        opened: impl FnOnce(),
    ) -> Result<WatchStream, StoreError> {
        if let Some(receiver) = self.subscribe(kind) {
            return Ok(stream(receiver));
        }
        opened();
        let upstream = backend.watch(kind, None).await?;
        let receiver = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            // Another caller may have opened one meanwhile: use it, and let
            // this one go.
            if let Some(shared) = running.iter().find(|r| r.serves(kind)) {
                return Ok(stream(shared.sender.subscribe()));
            }
            running.retain(|r| r.kind != kind);
            let (sender, receiver) = broadcast::channel(QUEUED);
            let alive = Arc::new(AtomicBool::new(true));
            running.push(Running {
                kind,
                sender: sender.clone(),
                alive: alive.clone(),
            });
            tokio::spawn(forward(upstream, sender, alive));
            receiver
        };
        Ok(stream(receiver))
    }

    fn subscribe(&self, kind: Kind) -> Option<broadcast::Receiver<Shared>> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running
            .iter()
            .find(|r| r.serves(kind))
            .map(|r| r.sender.subscribe())
    }

    /// Backend watches running now (for tests and metrics).
    pub(crate) fn running(&self) -> usize {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running
            .iter()
            .filter(|r| r.alive.load(Ordering::Acquire))
            .count()
    }
}

/// Sends the backend's events to every watcher until the backend watch
/// ends or no watcher is left.
async fn forward(
    mut upstream: WatchStream,
    sender: broadcast::Sender<Shared>,
    alive: Arc<AtomicBool>,
) {
    while let Some(event) = upstream.next().await {
        let end = event.is_err();
        if end {
            alive.store(false, Ordering::Release);
        }
        if sender.send(event).is_err() {
            // Nobody watches: the backend watch stops too.
            break;
        }
        if end {
            return;
        }
    }
    alive.store(false, Ordering::Release);
    let _ = sender.send(Err(StoreError::Expired("the watch ended".into())));
}

fn stream(receiver: broadcast::Receiver<Shared>) -> WatchStream {
    futures_util::stream::unfold(Some(receiver), |receiver| async move {
        let mut receiver = receiver?;
        match receiver.recv().await {
            Ok(Ok(event)) => Some((Ok(event), Some(receiver))),
            Ok(Err(e)) => Some((Err(e), None)),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "a watcher fell behind; it must list again");
                Some((Err(StoreError::Expired("lagged".into())), None))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
    .boxed()
}
