//! Watch for a backend that sees its own writes: each write is published
//! here with its version, kept in a bounded history (so that a watch may
//! start from a version a list gave) and fanned out to the open watches.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt as _;
use tokio::sync::broadcast;

use super::{StoreError, StoredObject, WatchEvent, WatchStream};
use crate::model::Kind;

/// Events kept for watches that start in the past, and queued per watch
/// before a slow one is told to list again.
pub(crate) const HISTORY: usize = 1024;

#[derive(Debug)]
struct Recorded {
    version: u64,
    kind: Kind,
    event: WatchEvent<StoredObject>,
}

#[derive(Debug)]
struct History {
    events: VecDeque<Arc<Recorded>>,
    /// Every event up to this version has left the history (or happened
    /// before the store was opened).
    forgotten_through: u64,
    sender: broadcast::Sender<Arc<Recorded>>,
}

/// The writes of one store, for its watches.
#[derive(Debug)]
pub(crate) struct WatchHub {
    history: Mutex<History>,
}

impl WatchHub {
    /// A hub for a store whose last write had version `current`.
    pub(crate) fn new(current: u64) -> WatchHub {
        WatchHub {
            history: Mutex::new(History {
                events: VecDeque::with_capacity(HISTORY),
                forgotten_through: current,
                sender: broadcast::channel(HISTORY).0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a write. Call in version order (under the store's write
    /// lock).
    pub(crate) fn publish(&self, version: u64, kind: Kind, event: WatchEvent<StoredObject>) {
        let mut history = self.lock();
        let recorded = Arc::new(Recorded {
            version,
            kind,
            event,
        });
        if history.events.len() == HISTORY {
            if let Some(old) = history.events.pop_front() {
                history.forgotten_through = old.version;
            }
        }
        history.events.push_back(recorded.clone());
        // No watch open is no error.
        let _ = history.sender.send(recorded);
    }

    /// The events of `kind` after `since` (from now without one).
    pub(crate) fn watch(&self, kind: Kind, since: Option<u64>) -> Result<WatchStream, StoreError> {
        let history = self.lock();
        let backlog: Vec<Arc<Recorded>> = match since {
            None => Vec::new(),
            Some(since) if since < history.forgotten_through => {
                return Err(StoreError::Expired(since.to_string()));
            }
            Some(since) => history
                .events
                .iter()
                .filter(|r| r.version > since && r.kind == kind)
                .cloned()
                .collect(),
        };
        // Subscribed under the same lock the writes publish under: nothing
        // falls between the backlog and the live events.
        let live = history.sender.subscribe();
        drop(history);
        let backlog = futures_util::stream::iter(backlog.into_iter().map(Ok));
        let live = futures_util::stream::unfold(Some(live), |receiver| async move {
            let mut receiver = receiver?;
            match receiver.recv().await {
                Ok(recorded) => Some((Ok(recorded), Some(receiver))),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "a watch fell behind; its watcher must list again");
                    Some((Err(StoreError::Expired("lagged".into())), None))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        Ok(backlog
            .chain(live)
            .filter_map(move |item| {
                let event = match item {
                    Ok(recorded) if recorded.kind == kind => Some(Ok(recorded.event.clone())),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                };
                std::future::ready(event)
            })
            .boxed())
    }
}
