//! Bearer tokens: an admin token made at first start, read-only tokens
//! made by an admin. Only SHA-256 hashes are stored; a presented token's
//! hash is compared with every stored one in constant time.

use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use super::problem::{ApiResult, Problem};
use super::{ApiJson, AppState, validate_name};
use crate::model::now_ms;
use crate::store::{Role, Store, StoreError, TokenRecord};

/// The tokens the server accepts.
#[derive(Debug)]
pub struct Auth {
    store: Store,
    tokens: RwLock<Vec<TokenRecord>>,
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn new_token() -> String {
    format!("wbd_{}", hex::encode(rand::random::<[u8; 32]>()))
}

impl Auth {
    /// Loads the stored token hashes; when there is no admin token yet,
    /// makes one and returns it, the only time it is ever shown.
    pub fn bootstrap(store: &Store) -> Result<(Arc<Auth>, Option<String>), StoreError> {
        let auth = Arc::new(Auth {
            store: store.clone(),
            tokens: RwLock::new(store.backend().tokens()?),
        });
        let has_admin = auth
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|t| t.role == Role::Admin);
        if has_admin {
            return Ok((auth, None));
        }
        let token = auth.issue("admin", Role::Admin)?;
        Ok((auth, Some(token)))
    }

    /// Makes, stores and returns a new token.
    pub fn issue(&self, name: &str, role: Role) -> Result<String, StoreError> {
        let token = new_token();
        let record = TokenRecord {
            sha256: hash(&token),
            name: name.to_owned(),
            role,
            created_at: now_ms(),
        };
        self.store.backend().put_token(&record)?;
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
        Ok(token)
    }

    /// The role of `token`, if it is one of ours. Every stored hash is
    /// compared, in constant time.
    pub fn role_of(&self, token: &str) -> Option<Role> {
        let presented = hash(token);
        let tokens = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        let mut found = None;
        for record in tokens.iter() {
            if bool::from(record.sha256.ct_eq(&presented)) {
                found = Some(record.role);
            }
        }
        found
    }
}

/// Refuses requests without a known bearer token (401) and writes with a
/// read-only token (403).
pub(crate) async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(role) = token.and_then(|t| state.auth.role_of(t)) else {
        return Problem::unauthorized().into_response();
    };
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if role == Role::ReadOnly && !reads {
        return Problem::forbidden().into_response();
    }
    request.extensions_mut().insert(role);
    next.run(request).await
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreateToken {
    /// What the token is for (DNS-label-like).
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    pub name: String,
    pub role: String,
    /// The token; shown only now.
    pub token: String,
}

/// Makes a read-only token (admin only).
#[utoipa::path(
    post, path = "/api/v1/tokens", tag = "tokens",
    request_body = CreateToken,
    responses(
        (status = 201, body = CreatedToken),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create_token(
    State(state): State<AppState>,
    axum::Extension(role): axum::Extension<Role>,
    ApiJson(body): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    if role != Role::Admin {
        return Err(Problem::forbidden());
    }
    validate_name(&body.name)?;
    let token = state.auth.issue(&body.name, Role::ReadOnly)?;
    tracing::info!(name = %body.name, "read-only token issued");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            name: body.name,
            role: "read_only".into(),
            token,
        }),
    ))
}
