//! `GET /api/v1/events`: resource changes as Server-Sent Events.
//!
//! Each change is one `change` event whose data is JSON:
//! `{"kind":"Device","name":"sim-0","type":"updated","resource_version":7}`
//! (`type` is `created`, `updated` or `deleted`). A comment line is sent
//! every [`KEEP_ALIVE`] so that proxies and browsers keep the stream open.
//! The first event, `ready`, tells the client it may fetch everything.
//!
//! Changes are found by comparing every resource's `resource_version` with
//! what this stream last saw, whenever [`Store::subscribe`] signals a write
//! and at least every [`POLL`]: the controller writes statuses through a
//! quiet store handle, which does not signal.
//!
//! ## The token in the query
//!
//! Like every API route this one needs a token. Browsers' `EventSource`
//! cannot send an `Authorization` header, so this route (and only this one)
//! also accepts the token as `?access_token=`, as RFC 6750 section 2.3
//! allows. Query strings are more likely than headers to end up in logs and
//! histories, which is why no other route accepts it; prefer the header
//! wherever the client can send one.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{ApiQuery, AppState, Problem};
use crate::model::Kind;
use crate::store::{Store, StoreError};

/// Longest time between two looks at the store.
pub const POLL: Duration = Duration::from_millis(500);
/// Time between two keep-alive comments.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

const KINDS: [Kind; 3] = [Kind::Device, Kind::Application, Kind::Gateway];

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
    pub resource_version: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeType {
    Created,
    Updated,
    Deleted,
}

type Versions = HashMap<(Kind, String), u64>;

fn versions(store: &Store) -> Result<Versions, StoreError> {
    let mut all = HashMap::new();
    for kind in KINDS {
        for object in store.backend().list(kind)? {
            all.insert(
                (kind, object.metadata.name),
                object.metadata.resource_version,
            );
        }
    }
    Ok(all)
}

/// The changes from `old` to `new`, in a stable order.
pub fn diff(old: &HashMap<(Kind, String), u64>, new: &HashMap<(Kind, String), u64>) -> Vec<Change> {
    let mut changes: Vec<Change> = new
        .iter()
        .filter_map(|((kind, name), version)| {
            let change = match old.get(&(*kind, name.clone())) {
                None => ChangeType::Created,
                Some(v) if v != version => ChangeType::Updated,
                Some(_) => return None,
            };
            Some(Change {
                kind: *kind,
                name: name.clone(),
                change,
                resource_version: Some(*version),
            })
        })
        .collect();
    changes.extend(
        old.keys()
            .filter(|key| !new.contains_key(*key))
            .map(|(kind, name)| Change {
                kind: *kind,
                name: name.clone(),
                change: ChangeType::Deleted,
                resource_version: None,
            }),
    );
    changes.sort_by(|a, b| (a.kind.as_str(), &a.name).cmp(&(b.kind.as_str(), &b.name)));
    changes
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

struct Watch {
    store: Store,
    changes: watch::Receiver<u64>,
    seen: Option<Versions>,
    pending: std::collections::VecDeque<Change>,
}

impl Watch {
    async fn next(&mut self) -> Event {
        loop {
            if let Some(change) = self.pending.pop_front() {
                return Event::default()
                    .event("change")
                    .json_data(&change)
                    .unwrap_or_else(|_| Event::default().comment("unencodable change"));
            }
            let first = self.seen.is_none();
            if !first {
                tokio::select! {
                    _ = self.changes.changed() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
            }
            self.changes.borrow_and_update();
            match versions(&self.store) {
                Ok(now) => {
                    if let Some(old) = &self.seen {
                        self.pending.extend(diff(old, &now));
                    }
                    self.seen = Some(now);
                    if first {
                        return Event::default().event("ready").data("{}");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "event stream could not read the store"),
            }
        }
    }
}

fn stream(store: Store) -> impl Stream<Item = Result<Event, Infallible>> {
    let watch = Watch {
        changes: store.subscribe(),
        store,
        seen: None,
        pending: Default::default(),
    };
    futures_util::stream::unfold(watch, |mut watch| async move {
        let event = watch.next().await;
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
    let token = bearer(&headers).or(from_query);
    if token.and_then(|t| state.auth.role_of(t)).is_none() {
        return Problem::unauthorized().into_response();
    }
    Sse::new(stream(state.store.clone()))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_finds_created_updated_and_deleted() {
        let key = |k: Kind, n: &str| (k, n.to_owned());
        let old: Versions = [
            (key(Kind::Device, "a"), 1),
            (key(Kind::Device, "b"), 2),
            (key(Kind::Application, "x"), 3),
        ]
        .into();
        let new: Versions = [
            (key(Kind::Device, "a"), 1),
            (key(Kind::Device, "b"), 4),
            (key(Kind::Gateway, "gw"), 5),
        ]
        .into();
        let changes = diff(&old, &new);
        let summary: Vec<(&str, &str, ChangeType)> = changes
            .iter()
            .map(|c| (c.kind.as_str(), c.name.as_str(), c.change))
            .collect();
        assert_eq!(
            summary,
            [
                ("Application", "x", ChangeType::Deleted),
                ("Device", "b", ChangeType::Updated),
                ("Gateway", "gw", ChangeType::Created),
            ]
        );
        assert_eq!(
            serde_json::to_value(&changes[1]).ok(),
            Some(serde_json::json!({
                "kind": "Device", "name": "b", "type": "updated", "resource_version": 4
            }))
        );
        assert!(diff(&new, &new).is_empty());
    }
}
