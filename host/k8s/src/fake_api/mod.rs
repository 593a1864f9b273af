//! A fake Kubernetes API server, **a test double**: it stands in for a
//! cluster in tests of [`KubeStore`](crate::KubeStore) and of what is
//! built on it, in memory. It is no server to run a product on: it has no
//! authentication at all, and nothing but tests uses it.
//!
//! [`FakeApiServer`] is a `tower::Service` of HTTP requests, as
//! `kube::Client::new` takes, for tests in the same process. For tests of
//! another process (a `wasmbed api` child), [`FakeApiServer::serve`] serves
//! it over plain HTTP/1.1 on a listener and [`write_kubeconfig`] writes the
//! kubeconfig a client finds it by. It serves namespaced custom resources
//! (`/apis/GROUP/VERSION/namespaces/NS/PLURAL[/NAME[/status]]`) of any
//! group, kind-agnostic, with the semantics of the Kubernetes API server
//! that a client relies on:
//!
//! - one resource version for the whole server, growing by one at each
//!   write; a write at a stale `resourceVersion` (or with a `uid` of
//!   another object) is a `409 Conflict`; a create with one is refused; an
//!   update that changes nothing changes no version and makes no event;
//! - `generation` 1 at creation, bumped by changes of anything but
//!   `metadata` and `status`, and when deletion marks the object;
//! - a status subresource on every resource: a create drops `status`, a
//!   `PUT` keeps the stored one, a `PUT .../status` changes the status
//!   only;
//! - finalizers: deleting an object with finalizers sets
//!   `deletionTimestamp` (no new finalizer may be added then), and the
//!   update that removes the last one deletes it;
//! - delete preconditions (`resourceVersion`, `uid`);
//! - `labelSelector` equality terms (`k=v`, `k==v`, `k!=v`), `limit` and
//!   `continue` tokens (which expire with the watch history);
//! - watch (`?watch=true&resourceVersion=N`): newline-delimited JSON
//!   events after version `N`, then live ones; `ERROR` with a `410` status
//!   when `N` is older than the history kept ([`FakeApiServer::with_history`],
//!   [`FakeApiServer::compact`]).
//!
//! Errors are `Status` bodies with the codes and reasons of the real
//! server. Unlike it, the fake has no authentication, admission, schema
//! validation, bookmarks or watch timeouts, and a `continue` token reads
//! the objects as they are now rather than as they were at the first page.

mod http_server;
mod objects;
mod request;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;

use objects::State;
use request::{Call, Refusal};

pub use http_server::write_kubeconfig;

/// The body of the fake server's responses (a watch's streams).
pub type FakeBody = UnsyncBoxBody<Bytes, Infallible>;

/// Events kept for watches from past versions, unless told otherwise.
pub const DEFAULT_HISTORY: usize = 1000;

/// The largest request body taken, as the real server's limit (3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// A fake Kubernetes API server in memory (a test double: see the
/// [module](self)). Clones share the same objects.
#[derive(Clone)]
pub struct FakeApiServer {
    state: Arc<Mutex<State>>,
    /// Requests answered, by every clone.
    requests: Arc<AtomicU64>,
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApiServer").finish_non_exhaustive()
    }
}

impl Default for FakeApiServer {
    fn default() -> Self {
        FakeApiServer::new()
    }
}

impl FakeApiServer {
    /// An empty server keeping [`DEFAULT_HISTORY`] events for watches.
    pub fn new() -> FakeApiServer {
        FakeApiServer::with_history(DEFAULT_HISTORY)
    }

    /// An empty server keeping the last `events` events for watches (and
    /// `continue` tokens) from past versions.
    pub fn with_history(events: usize) -> FakeApiServer {
        FakeApiServer {
            state: Arc::new(Mutex::new(State::new(events.max(1)))),
            requests: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A client of this server whose default namespace is `namespace`.
    pub fn client(&self, namespace: &str) -> kube::Client {
        kube::Client::new(self.clone(), namespace)
    }

    /// Forgets the watch history, as etcd's compaction does: a watch from
    /// any version before now, or a `continue` token given before now, is
    /// answered `410 Gone`.
    pub fn compact(&self) {
        self.lock().compact();
    }

    /// The server's current resource version.
    pub fn resource_version(&self) -> u64 {
        self.lock().version()
    }

    /// How many requests the server has answered (refusals included),
    /// through every clone: a test can tell it was used at all.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The answer to `request`, whatever carries it.
    async fn answer<B>(&self, request: http::Request<B>) -> http::Response<FakeBody>
    where
        B: http_body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let (parts, body) = request.into_parts();
        let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => {
                return Refusal::new(
                    http::StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLarge",
                    format!("the request body could not be read: {e}"),
                )
                .into_response();
            }
        };
        match Call::parse(&parts.method, &parts.uri, &body) {
            Ok(call) => self.lock().serve(call),
            Err(refusal) => refusal.into_response(),
        }
    }
}

impl tower::Service<http::Request<kube::client::Body>> for FakeApiServer {
    type Response = http::Response<FakeBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<kube::client::Body>) -> Self::Future {
        let server = self.clone();
        Box::pin(async move { Ok(server.answer(request).await) })
    }
}

#[cfg(test)]
mod tests;
