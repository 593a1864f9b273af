//! The dashboard: a static page, its script and its style sheet, built
//! into the binary. They are served without a token (there is nothing
//! secret in them); the page asks for a token and sends it with every API
//! call it makes.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the page |
//! | `GET /dashboard/app.js` | its script (plain JavaScript, no build step) |
//! | `GET /dashboard/style.css` | its style sheet |

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

/// The page.
pub const INDEX_HTML: &str = include_str!("../../dashboard/index.html");
/// The page's script.
pub const APP_JS: &str = include_str!("../../dashboard/app.js");
/// The page's style sheet.
pub const STYLE_CSS: &str = include_str!("../../dashboard/style.css");

/// Only our own script and style; the page talks only to this server.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; \
     base-uri 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The dashboard's routes (no token needed).
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}
