//! `GET /api/v1/events`: resource changes as Server-Sent Events.
//!
//! Each change is one `change` event whose data is JSON:
//! `{"kind":"Device","name":"sim-0","type":"updated","resource_version":7}`
//! (`type` is `created`, `updated` or `deleted`). A comment line is sent
//! every [`KEEP_ALIVE`] so that proxies and browsers keep the stream open.
//! The first event, `ready`, tells the client it may fetch everything.
//!
//! Changes come from watches of the store ([`Store::watch`]), one per
//! kind, opened when the stream is: an idle stream reads nothing. When a
//! watch breaks (the store fell behind, or a Kubernetes API server ended
//! it), the watches are opened again and `ready` is sent again: the client
//! fetches everything, as at the start.
//!
//! ## The token in the query
//!
//! Like every API route this one needs a token. Browsers' `EventSource`
//! cannot send an `Authorization` header, so this route (and only this one)
//! also accepts the token as `?access_token=`, as RFC 6750 section 2.3
//! allows. Query strings are more likely than headers to end up in logs and
//! histories, which is why no other route accepts it; prefer the header
//! wherever the client can send one.
//!
//! ## How many
//!
//! Every stream holds three watches of the store, so their number is
//! bounded ([`EventStreamLimits`]): per token (8 by default; a
//! browser opens one per dashboard tab) and in all (64 by default). A
//! stream beyond either bound is answered `429` with a problem document
//! (`too_many_streams`); a stream's place is freed when its client goes
//! away. Tokens are counted by their SHA-256, never kept in the clear.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ApiQuery, AppState, Auth, Problem};
use crate::model::Kind;
use crate::store::{Store, StoreError, StoredObject, WatchEvent};

/// Longest time between two checks that the stream's token is still valid
/// (in memory: no store read).
pub const TOKEN_CHECK: Duration = Duration::from_secs(1);
/// Time between two keep-alive comments.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

const KINDS: [Kind; 3] = [Kind::Device, Kind::Application, Kind::Gateway];

/// Most event streams open with one token, by default.
pub const DEFAULT_MAX_STREAMS_PER_TOKEN: usize = 8;
/// Most event streams open in all, by default.
pub const DEFAULT_MAX_STREAMS: usize = 64;
/// `Retry-After` of a `429`, in seconds.
const RETRY_AFTER_SECS: &str = "5";

/// How many event streams may be open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventStreamLimits {
    /// With one token.
    pub per_token: usize,
    /// In all.
    pub total: usize,
}

impl Default for EventStreamLimits {
    fn default() -> Self {
        EventStreamLimits {
            per_token: DEFAULT_MAX_STREAMS_PER_TOKEN,
            total: DEFAULT_MAX_STREAMS,
        }
    }
}

/// The event streams open now, counted per token (by its SHA-256) and in
/// all.
#[derive(Debug)]
pub struct EventStreams {
    limits: EventStreamLimits,
    open: Mutex<OpenStreams>,
}

#[derive(Debug, Default)]
struct OpenStreams {
    total: usize,
    per_token: HashMap<[u8; 32], usize>,
}

impl EventStreams {
    pub fn new(limits: EventStreamLimits) -> Arc<EventStreams> {
        Arc::new(EventStreams {
            limits,
            open: Mutex::new(OpenStreams::default()),
        })
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// A place for one more stream of `token`, or the `429` that refuses it.
    fn reserve(self: &Arc<Self>, token: &str) -> Result<StreamSlot, Problem> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let of_token = open.per_token.get(&key).copied().unwrap_or(0);
        if of_token >= self.limits.per_token {
            return Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                format!(
                    "this token already has {of_token} event streams open, the most allowed; \
                     close one (a dashboard tab, say) and retry"
                ),
            ));
        }
        if open.total >= self.limits.total {
            return Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                format!(
                    "the server has {} event streams open, the most it serves; retry later",
                    open.total
                ),
            ));
        }
        open.total += 1;
        *open.per_token.entry(key).or_insert(0) += 1;
        Ok(StreamSlot {
            streams: self.clone(),
            key,
        })
    }
}

/// One open stream's place; dropping it (the stream ended: its client went
/// away) frees it.
#[derive(Debug)]
struct StreamSlot {
    streams: Arc<EventStreams>,
    key: [u8; 32],
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_token.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.per_token.remove(&self.key);
            }
        }
    }
}

/// `?access_token=`, for clients that cannot send headers.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    pub access_token: Option<String>,
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub kind: Kind,
    pub name: String,
    #[serde(rename = "type")]
    pub change: ChangeType,
    /// The new version; absent for `deleted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeType {
    Created,
    Updated,
    Deleted,
}

impl Change {
    /// The change a watch event of `kind` tells.
    pub fn of(kind: Kind, event: &WatchEvent<StoredObject>) -> Change {
        let metadata = &event.object().metadata;
        let (change, resource_version) = match event {
            WatchEvent::Added(_) => (ChangeType::Created, Some(metadata.resource_version.clone())),
            WatchEvent::Modified(_) => {
                (ChangeType::Updated, Some(metadata.resource_version.clone()))
            }
            WatchEvent::Deleted(_) => (ChangeType::Deleted, None),
        };
        Change {
            kind,
            name: metadata.name.clone(),
            change,
            resource_version,
        }
    }
}

type Changes = futures_util::stream::SelectAll<BoxStream<'static, Result<Change, StoreError>>>;

/// Watches of every kind, from now, merged.
async fn watch_all(store: &Store) -> Result<Changes, StoreError> {
    let mut all = Vec::with_capacity(KINDS.len());
    for kind in KINDS {
        let events = store.watch_kind(kind, None).await?;
        all.push(
            events
                .map(move |event| event.map(|event| Change::of(kind, &event)))
                .boxed(),
        );
    }
    Ok(futures_util::stream::select_all(all))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

struct Watch {
    _slot: StreamSlot,
    /// The token the stream was opened with, checked again at every event
    /// and every [`TOKEN_CHECK`]: a revoked or expired token ends its
    /// streams.
    auth: Arc<Auth>,
    token_id: String,
    store: Store,
    /// `None` until opened, and after a watch broke.
    changes: Option<Changes>,
}

impl Watch {
    /// The next event; `None` once the stream's token is no longer valid.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if !self.auth.still_valid(&self.token_id) {
                tracing::info!(token = %self.token_id, "event stream ended: its token was revoked or expired");
                return None;
            }
            let Some(changes) = self.changes.as_mut() else {
                match watch_all(&self.store).await {
                    Ok(changes) => {
                        self.changes = Some(changes);
                        return Some(Event::default().event("ready").data("{}"));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "event stream could not watch the store; retrying");
                        tokio::time::sleep(TOKEN_CHECK).await;
                        continue;
                    }
                }
            };
            tokio::select! {
                change = changes.next() => match change {
                    Some(Ok(change)) => {
                        return Some(
                            Event::default()
                                .event("change")
                                .json_data(&change)
                                .unwrap_or_else(|_| Event::default().comment("unencodable change")),
                        );
                    }
                    Some(Err(e)) => {
                        tracing::info!(error = %e, "event stream's watch broke; watching again");
                        self.changes = None;
                    }
                    None => self.changes = None,
                },
                () = tokio::time::sleep(TOKEN_CHECK) => {}
            }
        }
    }
}

fn stream(watch: Watch) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(watch, |mut watch| async move {
        let event = watch.next().await?;
        Some((Ok(event), watch))
    })
}

/// `GET /api/v1/events`: see the module documentation.
pub(crate) async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Response {
    let from_query = query.access_token.as_deref();
    let Some(token) = bearer(&headers).or(from_query) else {
        return Problem::unauthorized().into_response();
    };
    let Ok(caller) = state.auth.authenticate(token) else {
        return Problem::unauthorized().into_response();
    };
    let slot = match state.streams.reserve(token) {
        Ok(slot) => slot,
        Err(problem) => {
            tracing::debug!(detail = %problem.detail, "event stream refused");
            let mut response = problem.into_response();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
            return response;
        }
    };
    let watch = Watch {
        _slot: slot,
        auth: state.auth.clone(),
        token_id: caller.token_id,
        store: state.store.clone(),
        changes: None,
    };
    Sse::new(stream(watch))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_events_become_changes() {
        let object = |name: &str, version: &str| StoredObject {
            metadata: crate::model::ObjectMeta {
                name: name.into(),
                resource_version: version.into(),
                ..Default::default()
            },
            spec: serde_json::json!({}),
            status: serde_json::Value::Null,
        };
        let updated = Change::of(Kind::Device, &WatchEvent::Modified(object("b", "4")));
        assert_eq!(
            serde_json::to_value(&updated).ok(),
            Some(serde_json::json!({
                "kind": "Device", "name": "b", "type": "updated", "resource_version": "4"
            }))
        );
        let created = Change::of(Kind::Gateway, &WatchEvent::Added(object("gw", "5")));
        assert_eq!(created.change, ChangeType::Created);
        let deleted = Change::of(Kind::Application, &WatchEvent::Deleted(object("x", "6")));
        assert_eq!(
            serde_json::to_value(&deleted).ok(),
            Some(serde_json::json!({"kind": "Application", "name": "x", "type": "deleted"}))
        );
    }

    #[test]
    fn streams_are_bounded_per_token_and_in_all_and_freed_when_dropped() {
        let streams = EventStreams::new(EventStreamLimits {
            per_token: 2,
            total: 3,
        });
        let a1 = streams.reserve("wbd_a").expect("room");
        let _a2 = streams.reserve("wbd_a").expect("room");
        let refused = streams.reserve("wbd_a").expect_err("a third for one token");
        assert_eq!(
            (refused.status, refused.code.as_str()),
            (429, "too_many_streams")
        );
        let _b1 = streams.reserve("wbd_b").expect("room");
        let refused = streams.reserve("wbd_c").expect_err("a fourth in all");
        assert!(
            refused.detail.contains("server has 3"),
            "{}",
            refused.detail
        );
        assert_eq!(streams.open_streams(), 3);
        drop(a1);
        assert_eq!(streams.open_streams(), 2);
        let _c1 = streams.reserve("wbd_c").expect("room again");
        // Kept by hash only.
        let open = streams.open.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            open.per_token
                .contains_key(&<[u8; 32]>::from(Sha256::digest(b"wbd_a")))
        );
    }
}
