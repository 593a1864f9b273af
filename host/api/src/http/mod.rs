//! The REST API.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | liveness (no token) |
//! | `GET /`, `/dashboard/app.js`, `/dashboard/style.css` | the [`dashboard`] (static, no token) |
//! | `GET /api/v1/events` | resource changes as Server-Sent Events ([`events`]); `429` beyond the open streams allowed |
//! | `GET /openapi.json` | the OpenAPI 3 document |
//! | `POST, GET /api/v1/tokens` | make a token (shown once), list them (admin) |
//! | `DELETE /api/v1/tokens/{id}` | revoke a token (admin) |
//! | `POST, GET /api/v1/devices[?labelSelector=k=v,...]` | create, list |
//! | `GET, PUT, DELETE /api/v1/devices/{name}` | read, replace labels and spec (at a `resource_version`), delete |
//! | `POST /api/v1/devices/{name}/revoke` | revoke: its gateway refuses it from now on and forgets it |
//! | `POST, GET /api/v1/applications[?labelSelector=...]` | create (module in base64), list |
//! | `GET, PUT, DELETE /api/v1/applications/{name}` | read, replace (a new module or limits is redeployed), delete (the controller removes its deployments first) |
//! | `GET /api/v1/applications/{name}/results` | its latest execution results (ten per device), newest first |
//! | `POST, GET /api/v1/gateways[?labelSelector=...]` | register, list |
//! | `GET, PUT, DELETE /api/v1/gateways/{name}` | read, replace labels and spec (at a `resource_version`), forget |
//! | `POST /api/v1/enrollments` | a gateway forwards an enrollment; this server signs it with its device CA ([`enrollments`]; gateway tokens) |
//! | `GET, PUT /api/v1/pairing` | whether devices may enroll, fleet-wide: `{"open": true, "duration_s": 600}` opens a window that closes by itself |
//! | `POST /api/v1/preauthorized` | let one public key enroll while pairing is closed |
//!
//! Every route but `/healthz` and the dashboard's static files needs
//! `Authorization: Bearer <token>` (`/api/v1/events` also takes it as
//! `?access_token=`, for browsers' `EventSource`); what each token may do
//! depends on its role ([`auth`]: admin, operator, read-only, or one
//! gateway's own registration). Errors are RFC 7807 problem documents.
//!
//! Lists are ordered by name and may be read in pages, Kubernetes style:
//! `?limit=N` (1 to 1000) gives at most N items, still a plain JSON array;
//! when more remain, the `X-Continue` response header holds an opaque
//! token, and `?limit=N&continue=<token>` gives the next page. Without
//! `limit`, a list holds everything, as it always did.
//!
//! Objects carry Kubernetes' metadata: `resource_version` is opaque text
//! (compare it, never order it; a `PUT` carries the one it read, and a
//! stale one is `409`), `generation` counts spec changes, and deleting an
//! object with `finalizers` marks it (`deletion_timestamp`, `202`) until
//! they are done: an application keeps `wasmbed.io/undeploy` until the
//! controller has removed it from its devices. A store that cannot serve
//! answers `503` (`store_unavailable`).

pub mod applications;
pub mod auth;
pub mod dashboard;
pub mod devices;
pub mod enrollments;
pub mod events;
pub mod gateways;
pub mod problem;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::store::{ListParams, Store};
pub use auth::Auth;
pub use problem::{ApiResult, Problem};

/// Largest module accepted, before base64.
pub const MAX_MODULE_SIZE: usize = 1024 * 1024;
/// Largest request body: a module in base64 and some JSON.
pub const MAX_BODY_SIZE: usize = MAX_MODULE_SIZE * 4 / 3 + 64 * 1024;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub auth: Arc<Auth>,
    /// The open event streams and their bounds.
    pub streams: Arc<events::EventStreams>,
    /// The device CA enrollments are signed with (`--pki`); without it
    /// `POST /api/v1/enrollments` answers 503.
    pub device_issuer: enrollments::Signer,
}

impl AppState {
    /// The state of a server with the default event stream bounds.
    pub fn new(store: Store, auth: Arc<Auth>) -> AppState {
        AppState::with_stream_limits(store, auth, events::EventStreamLimits::default())
    }

    /// The state of a server with these event stream bounds.
    pub fn with_stream_limits(
        store: Store,
        auth: Arc<Auth>,
        limits: events::EventStreamLimits,
    ) -> AppState {
        AppState {
            store,
            auth,
            streams: events::EventStreams::new(limits),
            device_issuer: None,
        }
    }

    /// The same state, signing enrollments with `issuer`.
    pub fn with_device_issuer(mut self, issuer: Arc<wasmbed_pki::DeviceIssuer>) -> AppState {
        self.device_issuer = Some(issuer);
        self
    }
}

/// The whole API as a router, to serve or to call in tests.
pub fn app(state: AppState) -> Router {
    let protected = Router::new()
        .route("/openapi.json", get(openapi_json))
        .route(
            "/api/v1/tokens",
            get(auth::list_tokens).post(auth::create_token),
        )
        .route("/api/v1/tokens/{id}", delete(auth::revoke_token))
        // Its handler checks the token too; the role is checked here.
        .route(auth::EVENTS_ROUTE, get(events::events))
        .route("/api/v1/devices", get(devices::list).post(devices::create))
        .route(
            "/api/v1/devices/{name}",
            get(devices::get_one)
                .put(devices::update)
                .delete(devices::delete),
        )
        .route("/api/v1/devices/{name}/revoke", post(devices::revoke))
        .route(
            "/api/v1/applications",
            get(applications::list).post(applications::create),
        )
        .route(
            "/api/v1/applications/{name}",
            get(applications::get_one)
                .put(applications::update)
                .delete(applications::delete),
        )
        .route(
            "/api/v1/applications/{name}/results",
            get(applications::results),
        )
        .route(
            "/api/v1/gateways",
            get(gateways::list).post(gateways::create),
        )
        .route(
            "/api/v1/gateways/{name}",
            get(gateways::get_one)
                .put(gateways::update)
                .delete(gateways::delete),
        )
        .route("/api/v1/enrollments", post(enrollments::enroll))
        .route(
            "/api/v1/pairing",
            get(enrollments::get_pairing).put(enrollments::set_pairing),
        )
        .route("/api/v1/preauthorized", post(enrollments::preauthorize))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(dashboard::router())
        .merge(protected)
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_SIZE))
        .with_state(state)
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::document())
}

/// `Json` whose rejections are problem documents.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(Problem))]
pub struct ApiJson<T>(pub T);

/// `Query` whose rejections are problem documents.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Problem))]
pub struct ApiQuery<T>(pub T);

/// The metadata a client gives when creating a resource.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewMetadata {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Most items a page may hold.
pub const MAX_PAGE_LIMIT: usize = 1000;

/// The response header that carries the `continue` token of the next page.
pub const CONTINUE_HEADER: &str = "x-continue";

/// `?labelSelector=k=v,k2=v2&limit=N&continue=TOKEN`: only resources with
/// all these labels, by name, at most `limit` of them after the position
/// a previous page's token names.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only resources with all these labels: `k=v[,k=v...]`.
    #[serde(rename = "labelSelector")]
    #[param(rename = "labelSelector")]
    pub label_selector: Option<String>,
    /// At most this many items (1 to 1000); without it, every item. When
    /// more remain, the answer's `X-Continue` header holds the token of
    /// the next page.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `X-Continue` token of the previous page (with the same
    /// `labelSelector`): the items after it, by name. Items created or
    /// deleted between pages show or vanish as they sort.
    #[serde(rename = "continue")]
    #[param(rename = "continue")]
    pub continue_token: Option<String>,
}

/// One answer of a list: a JSON array of items, with the `X-Continue`
/// header when more items remain.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The token of the next page; `None` when this page ends the list.
    pub next: Option<String>,
}

impl<T: Serialize> axum::response::IntoResponse for Page<T> {
    fn into_response(self) -> axum::response::Response {
        let mut response = Json(self.items).into_response();
        if let Some(token) = self.next {
            match axum::http::HeaderValue::from_str(&token) {
                Ok(value) => {
                    response.headers_mut().insert(CONTINUE_HEADER, value);
                }
                Err(_) => return Problem::internal().into_response(),
            }
        }
        response
    }
}

/// What a `continue` token of the REST API holds: the list it belongs to
/// (kind and selector, checked on every backend) and the store's own token.
/// Opaque to clients (base64url of this, as JSON).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct ContinueToken {
    /// Format version.
    v: u8,
    kind: String,
    selector: BTreeMap<String, String>,
    /// The store's token (SQLite's, or a Kubernetes API server's).
    inner: String,
}

const TOKEN_VERSION: u8 = 2;

impl ContinueToken {
    fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// The store's token inside `text`, a token of a list of `kind` with
    /// `selector`.
    fn decode(
        text: &str,
        kind: crate::model::Kind,
        selector: &BTreeMap<String, String>,
    ) -> ApiResult<String> {
        let invalid = |detail: &str| {
            Problem::bad_request(
                "invalid_query",
                format!("continue is not a token of this list: {detail}"),
            )
        };
        if text.len() > MAX_CONTINUE_TOKEN {
            return Err(invalid("too long"));
        }
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| invalid("not base64url"))?;
        let token: ContinueToken =
            serde_json::from_slice(&json).map_err(|_| invalid("not a continue token"))?;
        if token.v != TOKEN_VERSION {
            return Err(invalid("unknown version"));
        }
        if token.kind != kind.as_str() {
            return Err(invalid("it belongs to a list of another kind"));
        }
        if &token.selector != selector {
            return Err(invalid("it belongs to a list with another labelSelector"));
        }
        if token.inner.is_empty() {
            return Err(invalid("no position"));
        }
        Ok(token.inner)
    }
}

impl ListQuery {
    /// The validated `limit`, if any.
    pub fn limit(&self) -> ApiResult<Option<usize>> {
        match self.limit {
            None => Ok(None),
            Some(n) if (1..=MAX_PAGE_LIMIT).contains(&(n as usize)) => Ok(Some(n as usize)),
            Some(_) => Err(Problem::bad_request(
                "invalid_query",
                format!("limit must be 1 to {MAX_PAGE_LIMIT}"),
            )),
        }
    }

    /// One page of the resources of kind `T` that carry every label of
    /// the selector, by name: at most `limit` (all without one) after the
    /// `continue` token's position (from the start without one). The store
    /// filters and pages; its token is passed on as it is.
    pub(crate) async fn page<T: crate::model::Object>(&self, store: &Store) -> ApiResult<Page<T>> {
        let labels = self.selector()?;
        let continue_token = self
            .continue_token
            .as_deref()
            .map(|token| ContinueToken::decode(token, T::KIND, &labels))
            .transpose()?;
        let params = ListParams {
            labels,
            limit: self.limit()?,
            continue_token,
        };
        if params.limit.is_none() {
            let all = store.list_all::<T>(params).await?;
            return Ok(Page {
                items: all.items,
                next: None,
            });
        }
        let page = store.list_page::<T>(&params).await?;
        let next = page.continue_token.map(|inner| {
            ContinueToken {
                v: TOKEN_VERSION,
                kind: T::KIND.as_str().to_owned(),
                selector: params.labels.clone(),
                inner,
            }
            .encode()
        });
        Ok(Page {
            items: page.items,
            next,
        })
    }

    /// The parsed selector; empty when none was given.
    pub fn selector(&self) -> ApiResult<BTreeMap<String, String>> {
        let mut labels = BTreeMap::new();
        let Some(text) = self.label_selector.as_deref() else {
            return Ok(labels);
        };
        for term in text.split(',').filter(|t| !t.trim().is_empty()) {
            let Some((key, value)) = term.split_once('=') else {
                return Err(Problem::bad_request(
                    "invalid_query",
                    "labelSelector terms are key=value",
                ));
            };
            let key = key.trim().trim_end_matches('=');
            let value = value.trim().trim_start_matches('=');
            validate_label(key, value)?;
            labels.insert(key.to_owned(), value.to_owned());
        }
        Ok(labels)
    }
}

/// Longest `continue` token taken: the store's own are far shorter.
const MAX_CONTINUE_TOKEN: usize = 4096;

/// A DNS label: 1 to 63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn validate_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Problem::bad_request(
            "invalid_name",
            format!(
                "{name:?} is not a valid name: 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
            ),
        ))
    }
}

fn label_text_ok(text: &str, key: bool) -> bool {
    text.len() <= 63
        && text.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') || (key && b == b'/')
        })
}

/// A label key (1 to 63 of `[A-Za-z0-9._/-]`) and value (up to 63 of `[A-Za-z0-9._-]`).
pub fn validate_label(key: &str, value: &str) -> ApiResult<()> {
    if !key.is_empty() && label_text_ok(key, true) && label_text_ok(value, false) {
        Ok(())
    } else {
        Err(Problem::bad_request(
            "invalid_label",
            format!("{key:?}={value:?} is not a valid label"),
        ))
    }
}

pub(crate) fn validate_metadata(metadata: &NewMetadata) -> ApiResult<()> {
    validate_name(&metadata.name)?;
    if metadata.labels.len() > 64 {
        return Err(Problem::bad_request("invalid_label", "at most 64 labels"));
    }
    for (key, value) in &metadata.labels {
        validate_label(key, value)?;
    }
    Ok(())
}

pub(crate) fn object_meta(metadata: NewMetadata) -> crate::model::ObjectMeta {
    crate::model::ObjectMeta {
        name: metadata.name,
        labels: metadata.labels,
        ..Default::default()
    }
}

/// Validates the `{name}` of a path (so that no odd text reaches the store).
pub(crate) fn path_name(name: &str) -> ApiResult<()> {
    validate_name(name).map_err(|_| Problem::not_found(format!("{name:?} not found")))
}
