//! Errors as RFC 7807 problem documents (`application/problem+json`).

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::StoreError;

/// An RFC 7807 problem document with a stable `code`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type (`urn:wasmbed:problem:<code>`).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// Stable, machine-readable: `not_found`, `conflict`, `invalid_module`, ...
    pub code: String,
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("urn:wasmbed:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            code: code.to_owned(),
            detail: detail.into(),
        }
    }

    pub fn bad_request(code: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn unauthorized() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    }

    pub fn forbidden() -> Problem {
        Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token may only read",
        )
    }

    /// 403 with `detail` saying what the token may do instead.
    pub fn forbidden_because(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 401 for a token that has expired.
    pub fn token_expired(id: &str) -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "token_expired",
            format!("token {id} has expired; ask an admin for a new one"),
        )
    }

    pub fn internal() -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Problem {
        match e {
            StoreError::NotFound { kind, name } => {
                Problem::not_found(format!("{kind} {name} not found"))
            }
            StoreError::AlreadyExists { kind, name } => Problem::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{kind} {name} already exists"),
            ),
            StoreError::Conflict { kind, name, .. } => Problem::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{kind} {name} was changed concurrently; read it again"),
            ),
            StoreError::Invalid(detail) => Problem::bad_request("invalid_query", detail),
            StoreError::Expired(version) => Problem::new(
                StatusCode::GONE,
                "expired",
                format!("resource version {version} is too old: list again from the start"),
            ),
            StoreError::Unavailable(reason) => {
                tracing::error!(%reason, "the store is unavailable");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store cannot serve now; retry later",
                )
            }
            StoreError::Corrupt(reason) => {
                tracing::error!(%reason, "the store holds an object that does not decode");
                Problem::internal()
            }
        }
    }
}

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Problem {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Problem::new(status, "payload_too_large", "the request body is too large");
        }
        if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            return Problem::new(status, "unsupported_media_type", rejection.body_text());
        }
        Problem::bad_request("invalid_body", rejection.body_text())
    }
}

impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Problem {
        Problem::bad_request("invalid_query", rejection.body_text())
    }
}

pub type ApiResult<T> = Result<T, Problem>;
