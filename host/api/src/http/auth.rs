//! Bearer tokens, and what each may do.
//!
//! An admin token is made at first start (and shown once); admins make
//! the others with `POST /api/v1/tokens`. Only a token's SHA-256 is
//! stored; a presented token's hash is compared with every known one in
//! constant time. Each token has a public `id` (random, unrelated to the
//! secret) by which it is listed (`GET /api/v1/tokens`) and revoked
//! (`DELETE /api/v1/tokens/{id}`), a role, and may have an expiry time.
//!
//! | role | may |
//! |---|---|
//! | `admin` | everything, tokens included |
//! | `operator` | create, change and delete devices and applications; open and close pairing, pre-authorise keys; read everything else but tokens |
//! | `read_only` | `GET` everything but tokens |
//! | `gateway` | register its own gateway (`POST /api/v1/gateways` with its name) and read and update it (`GET`, `PUT /api/v1/gateways/{its name}`); forward enrollments (`POST /api/v1/enrollments`); nothing else |
//!
//! A missing, unknown or revoked token is answered 401 (`unauthorized`),
//! an expired one 401 (`token_expired`); a token outside its role 403
//! (`forbidden`). A `gateway` token is bound to one gateway name when it
//! is made: it is what `wasmbed gateway --api-token` needs, and all a
//! stolen one gives is that gateway's registration. A name ending in `*`
//! binds it to every gateway whose name starts with what comes before (the
//! pods of a StatefulSet, `wasmbed-gateway-*`): one Secret for all of
//! them, and a stolen one gives the registrations of those gateways only.
//!
//! Tokens never expire unless made with `expires_in_s`: they are service
//! credentials (a gateway, a dashboard, a CI job) that would stop working
//! unnoticed; the CLI warns when it makes one without expiry. An expired
//! token stays listed, refused, until revoked.
//!
//! The tokens are cached here; a revocation changes the store and the
//! cache under one lock, so the next request with the token is refused
//! (an open event stream keeps running; its reconnection is refused).
//! Replicas sharing the token store ([`DirStore`](crate::store::DirStore))
//! read it again every `token_reload`, so a token revoked at one is refused
//! by the others within that time; a revocation reads the store first, so
//! the last-admin check sees what the other replicas made or revoked. The
//! last admin token that has not expired cannot be revoked (409), so that
//! an installation cannot lock itself out; if every admin token has
//! expired, the next start makes a new one and shows it, as at first
//! start. The time of a token's last use is not kept: that would be a
//! write per request.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use axum::Json;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use super::problem::{ApiResult, Problem};
use super::{ApiJson, AppState, validate_name};
use crate::model::now_ms;
use crate::store::{Role, Store, StoreError, TokenRecord, new_token_id};

/// The route that also takes its token as `?access_token=` (browsers'
/// `EventSource` cannot send headers).
pub const EVENTS_ROUTE: &str = "/api/v1/events";

/// Longest lifetime a token may be given: ten years, in seconds.
pub const MAX_EXPIRES_IN_S: u64 = 10 * 365 * 24 * 3600;

/// The tokens the server accepts.
#[derive(Debug)]
pub struct Auth {
    store: Store,
    tokens: RwLock<Vec<TokenRecord>>,
    /// Held across a token write and its store call, so that two
    /// revocations cannot both pass the last-admin check.
    writes: tokio::sync::Mutex<()>,
}

/// Who made a request: the token's id, role and, for a gateway token, the
/// gateway it is bound to. Handlers find it in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub token_id: String,
    pub role: Role,
    pub gateway: Option<String>,
}

impl Caller {
    /// Refuses (403) a gateway token acting on another gateway than its
    /// own; every other role passes (what they may do is checked by route).
    pub fn check_gateway(&self, name: &str) -> ApiResult<()> {
        match (self.role, self.gateway.as_deref()) {
            (Role::Gateway, Some(own)) if gateway_matches(own, name) => Ok(()),
            (Role::Gateway, own) => Err(Problem::forbidden_because(format!(
                "this token may only register and update gateway {}",
                own.unwrap_or("-")
            ))),
            _ => Ok(()),
        }
    }
}

/// Whether the gateway `bound` of a token (a name, or a prefix and `*`)
/// covers the gateway `name`.
pub fn gateway_matches(bound: &str, name: &str) -> bool {
    match bound.strip_suffix('*') {
        Some(prefix) => name.len() > prefix.len() && name.starts_with(prefix),
        None => bound == name,
    }
}

/// Checks what a gateway token is bound to: a gateway name, or a prefix of
/// one (letters, digits and `-`, starting with a letter or digit) and `*`.
fn validate_gateway_binding(bound: &str) -> ApiResult<()> {
    let Some(prefix) = bound.strip_suffix('*') else {
        return validate_name(bound);
    };
    let well_formed = !prefix.is_empty()
        && prefix.len() < 63
        && prefix.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if well_formed {
        Ok(())
    } else {
        Err(invalid(
            "gateway must be a gateway name, or the start of one followed by `*` \
             (lowercase letters, digits and `-`, e.g. `wasmbed-gateway-*`)",
        ))
    }
}

/// Why a presented token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unknown or revoked token")]
    Unknown,
    #[error("token {id} has expired")]
    Expired { id: String },
}

/// Why a token could not be revoked.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("no token {0}")]
    NotFound(String),
    #[error("token {0} is the last admin token that has not expired")]
    LastAdmin(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A token to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    /// The gateway a [`Role::Gateway`] token is bound to.
    pub gateway: Option<String>,
    /// Milliseconds since the Unix epoch; `None`: never expires.
    pub expires_at: Option<u64>,
}

/// A token's SHA-256, as stored.
pub fn token_sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn new_secret() -> String {
    format!("wbd_{}", hex::encode(rand::random::<[u8; 32]>()))
}

fn usable_admin(record: &TokenRecord, now: u64) -> bool {
    record.role == Role::Admin && !record.expired_at(now)
}

impl Auth {
    /// Loads the stored tokens; when none is an admin token that has not
    /// expired, makes one and returns it, the only time it is ever shown.
    pub async fn bootstrap(store: &Store) -> Result<(Arc<Auth>, Option<String>), StoreError> {
        let auth = Arc::new(Auth {
            store: store.clone(),
            tokens: RwLock::new(store.tokens().tokens().await?),
            writes: tokio::sync::Mutex::new(()),
        });
        let now = now_ms();
        let (has_admin, had_admin) = {
            let tokens = auth.read();
            (
                tokens.iter().any(|t| usable_admin(t, now)),
                tokens.iter().any(|t| t.role == Role::Admin),
            )
        };
        if has_admin {
            return Ok((auth, None));
        }
        if had_admin {
            tracing::warn!("every admin token has expired; making a new one");
        }
        let token = auth.issue("admin", Role::Admin).await?;
        Ok((auth, Some(token)))
    }

    fn read(&self) -> RwLockReadGuard<'_, Vec<TokenRecord>> {
        self.tokens.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Vec<TokenRecord>> {
        self.tokens.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes, stores and returns a new token that never expires. A
    /// [`Role::Gateway`] token made here is bound to the gateway `name`.
    pub async fn issue(&self, name: &str, role: Role) -> Result<String, StoreError> {
        let (_, token) = self
            .create(NewToken {
                name: name.to_owned(),
                role,
                gateway: (role == Role::Gateway).then(|| name.to_owned()),
                expires_at: None,
            })
            .await?;
        Ok(token)
    }

    /// Makes and stores a token; returns its record and the token, which
    /// is not kept.
    pub async fn create(&self, new: NewToken) -> Result<(TokenRecord, String), StoreError> {
        let token = new_secret();
        let record = TokenRecord {
            id: new_token_id(),
            sha256: token_sha256(&token),
            name: new.name,
            role: new.role,
            gateway: new.gateway,
            created_at: now_ms(),
            expires_at: new.expires_at,
        };
        let _writing = self.writes.lock().await;
        self.store.tokens().put_token(&record).await?;
        self.write().push(record.clone());
        Ok((record, token))
    }

    /// Who `token` belongs to, if it is one of ours and has not expired.
    /// Every stored hash is compared, in constant time.
    pub fn authenticate(&self, token: &str) -> Result<Caller, Refusal> {
        let presented = token_sha256(token);
        let tokens = self.read();
        let mut found = None;
        for record in tokens.iter() {
            if bool::from(record.sha256.ct_eq(&presented)) {
                found = Some(record);
            }
        }
        let record = found.ok_or(Refusal::Unknown)?;
        if record.expired_at(now_ms()) {
            return Err(Refusal::Expired {
                id: record.id.clone(),
            });
        }
        Ok(Caller {
            token_id: record.id.clone(),
            role: record.role,
            gateway: record.gateway.clone(),
        })
    }

    /// Whether the token with this id is still one of ours and has not
    /// expired (for a long-lived request, such as an event stream, that
    /// authenticated once).
    pub fn still_valid(&self, token_id: &str) -> bool {
        let now = now_ms();
        self.read()
            .iter()
            .any(|record| record.id == token_id && !record.expired_at(now))
    }

    /// The role of `token`, if it is one of ours and has not expired.
    pub fn role_of(&self, token: &str) -> Option<Role> {
        self.authenticate(token).ok().map(|caller| caller.role)
    }

    /// Reads the tokens again from the store: when other API servers share
    /// it, what they made or revoked counts here from now on.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _writing = self.writes.lock().await;
        let stored = self.store.tokens().tokens().await?;
        *self.write() = stored;
        Ok(())
    }

    /// Every token (without the tokens themselves), oldest first.
    pub fn tokens(&self) -> Vec<TokenRecord> {
        self.read().clone()
    }

    /// Revokes the token `id`: the next request with it is refused.
    /// Refused for the last admin token that has not expired.
    pub async fn revoke(&self, id: &str) -> Result<TokenRecord, RevokeError> {
        let _writing = self.writes.lock().await;
        // As stored now: other replicas sharing the store may have made or
        // revoked tokens since this one last read them.
        let stored = self.store.tokens().tokens().await?;
        *self.write() = stored;
        {
            let tokens = self.read();
            let record = tokens
                .iter()
                .find(|t| t.id == id)
                .ok_or_else(|| RevokeError::NotFound(id.to_owned()))?;
            let now = now_ms();
            let other_admins = tokens
                .iter()
                .filter(|t| t.id != id && usable_admin(t, now))
                .count();
            if usable_admin(record, now) && other_admins == 0 {
                return Err(RevokeError::LastAdmin(id.to_owned()));
            }
        }
        self.store.tokens().delete_token(id).await?;
        let mut tokens = self.write();
        let index = tokens
            .iter()
            .position(|t| t.id == id)
            .ok_or_else(|| RevokeError::NotFound(id.to_owned()))?;
        Ok(tokens.remove(index))
    }
}

/// Whether `role` may call `method` on `route` (the route as the router
/// spells it, e.g. `/api/v1/gateways/{name}`). Which gateway a gateway
/// token names is checked by the gateway handlers
/// ([`Caller::check_gateway`]).
pub(crate) fn allows(role: Role, method: &Method, route: &str) -> bool {
    let reads = matches!(*method, Method::GET | Method::HEAD);
    let tokens = route.starts_with("/api/v1/tokens");
    match role {
        Role::Admin => true,
        Role::Operator => {
            !tokens
                && (reads
                    || route.starts_with("/api/v1/devices")
                    || route.starts_with("/api/v1/applications")
                    || route == "/api/v1/pairing"
                    || route == "/api/v1/preauthorized")
        }
        Role::ReadOnly => reads && !tokens,
        // Enrollments are forwarded by gateways: no person's token but an
        // admin's has device certificates signed.
        Role::Gateway => matches!(
            (method.as_str(), route),
            ("POST", "/api/v1/gateways" | "/api/v1/enrollments")
                | ("GET" | "HEAD" | "PUT", "/api/v1/gateways/{name}")
        ),
    }
}

/// The 403 for `caller` calling what its role does not allow.
fn refusal_for(caller: &Caller, route: &str) -> Problem {
    let detail = match caller.role {
        _ if route.starts_with("/api/v1/tokens") => "only admin tokens manage tokens".to_owned(),
        Role::ReadOnly => "this token may only read".to_owned(),
        Role::Operator if route == "/api/v1/enrollments" => {
            "enrollments are forwarded by gateways, with a gateway token".to_owned()
        }
        Role::Operator => {
            "operator tokens change devices, applications and pairing only; gateways need an admin token"
                .to_owned()
        }
        Role::Gateway => format!(
            "this token may only register and update gateway {} and forward enrollments",
            caller.gateway.as_deref().unwrap_or("-")
        ),
        // Never: an admin may do everything.
        Role::Admin => "not allowed".to_owned(),
    };
    Problem::forbidden_because(detail)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// `?access_token=` of the event stream's request.
fn query_token(request: &Request) -> Option<String> {
    #[derive(Deserialize)]
    struct AccessToken {
        access_token: Option<String>,
    }
    axum::extract::Query::<AccessToken>::try_from_uri(request.uri())
        .ok()
        .and_then(|query| query.0.access_token)
}

/// Refuses requests without a valid bearer token (401) or outside the
/// token's role (403); hands the [`Caller`] to the handler.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_default();
    let token = match bearer(request.headers()) {
        Some(token) => Some(token.to_owned()),
        None if route == EVENTS_ROUTE => query_token(&request),
        None => None,
    };
    let caller = match token.as_deref().map(|t| state.auth.authenticate(t)) {
        Some(Ok(caller)) => caller,
        Some(Err(Refusal::Expired { id })) => {
            return Problem::token_expired(&id).into_response();
        }
        Some(Err(Refusal::Unknown)) | None => return Problem::unauthorized().into_response(),
    };
    if !allows(caller.role, request.method(), &route) {
        return refusal_for(&caller, &route).into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreateToken {
    /// What the token is for (DNS-label-like); need not be unique.
    pub name: String,
    /// What it may do; `read_only` when left out.
    #[serde(default = "read_only")]
    pub role: Role,
    /// For a `gateway` token (and only for one): the name of the Gateway
    /// resource it may register and update, or the start of the names it
    /// may, followed by `*` (`wasmbed-gateway-*`).
    #[serde(default)]
    pub gateway: Option<String>,
    /// Seconds until it is refused (1 to ten years); never when left out.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 315_360_000)]
    pub expires_in_s: Option<u64>,
}

fn read_only() -> Role {
    Role::ReadOnly
}

/// A token as listed: never the token itself.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// Names the token in lists and revocations.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The gateway a `gateway` token is bound to.
    pub gateway: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    /// Milliseconds since the Unix epoch; null: never expires.
    pub expires_at: Option<u64>,
    /// Whether it has expired (and is refused).
    pub expired: bool,
}

impl TokenInfo {
    fn of(record: &TokenRecord, now: u64) -> TokenInfo {
        TokenInfo {
            id: record.id.clone(),
            name: record.name.clone(),
            role: record.role,
            gateway: record.gateway.clone(),
            created_at: record.created_at,
            expires_at: record.expires_at,
            expired: record.expired_at(now),
        }
    }
}

/// A new token: its description and, this once, the token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The bearer token; shown only now (only its hash is stored).
    pub token: String,
}

fn invalid(detail: &str) -> Problem {
    Problem::bad_request("invalid_token_request", detail)
}

impl CreateToken {
    /// The token to make, once the request is checked.
    fn validate(self, now: u64) -> ApiResult<NewToken> {
        validate_name(&self.name)?;
        match (self.role, &self.gateway) {
            (Role::Gateway, Some(gateway)) => validate_gateway_binding(gateway)?,
            (Role::Gateway, None) => {
                return Err(invalid(
                    "a gateway token needs `gateway`: the name of the gateway it registers",
                ));
            }
            (_, Some(_)) => return Err(invalid("only gateway tokens are bound to a gateway")),
            (_, None) => {}
        }
        let expires_at = match self.expires_in_s {
            None => None,
            Some(seconds @ 1..=MAX_EXPIRES_IN_S) => Some(now.saturating_add(seconds * 1000)),
            Some(_) => {
                return Err(invalid(&format!(
                    "expires_in_s must be 1 to {MAX_EXPIRES_IN_S} (ten years)"
                )));
            }
        };
        Ok(NewToken {
            name: self.name,
            role: self.role,
            gateway: self.gateway,
            expires_at,
        })
    }
}

/// Makes a token (admin only); the answer holds it, the only time it is
/// shown.
#[utoipa::path(
    post, path = "/api/v1/tokens", tag = "tokens",
    request_body = CreateToken,
    responses(
        (status = 201, body = CreatedToken),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create_token(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let new = body.validate(now_ms())?;
    let (record, token) = state.auth.create(new).await?;
    tracing::info!(
        id = %record.id, name = %record.name, role = record.role.as_str(),
        gateway = record.gateway.as_deref().unwrap_or("-"),
        expires_at = ?record.expires_at,
        "token made"
    );
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            info: TokenInfo::of(&record, now_ms()),
            token,
        }),
    ))
}

/// Every token, oldest first, without the tokens themselves (admin only).
#[utoipa::path(
    get, path = "/api/v1/tokens", tag = "tokens",
    responses(
        (status = 200, body = Vec<TokenInfo>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not an admin token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_tokens(State(state): State<AppState>) -> Json<Vec<TokenInfo>> {
    let now = now_ms();
    Json(
        state
            .auth
            .tokens()
            .iter()
            .map(|record| TokenInfo::of(record, now))
            .collect(),
    )
}

/// Revokes a token (admin only): refused from the next request on.
/// Refused with 409 for the last admin token that has not expired.
#[utoipa::path(
    delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "The token's id, as listed")),
    responses(
        (status = 204, description = "revoked"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the last admin token that has not expired", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    match state.auth.revoke(&id).await {
        Ok(record) => {
            tracing::info!(id = %record.id, name = %record.name, role = record.role.as_str(), "token revoked");
            Ok(StatusCode::NO_CONTENT)
        }
        Err(RevokeError::NotFound(_)) => Err(Problem::not_found(format!("token {id:?} not found"))),
        Err(RevokeError::LastAdmin(_)) => Err(Problem::new(
            StatusCode::CONFLICT,
            "last_admin_token",
            format!(
                "token {id} is the last admin token that has not expired; make another admin token before revoking it"
            ),
        )),
        Err(RevokeError::Store(e)) => Err(e.into()),
    }
}
