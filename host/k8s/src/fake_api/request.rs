//! What a request to the fake server asks, and the shapes of its answers.

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use http::{Method, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, StreamBody};
use serde_json::{Map, Value, json};

use super::FakeBody;

/// The objects of one resource in one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Collection {
    pub(super) group: String,
    pub(super) version: String,
    pub(super) namespace: String,
    pub(super) plural: String,
}

impl Collection {
    /// The resource as errors name it, e.g. `devices.wasmbed.io`.
    pub(super) fn resource(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }

    pub(super) fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

/// One term of a label selector.
#[derive(Debug, Clone, PartialEq)]
enum Term {
    Equal(String, String),
    NotEqual(String, String),
}

/// A label selector of equality terms; empty: everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Selector(Vec<Term>);

impl Selector {
    fn parse(text: &str) -> Result<Selector, String> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let parsed = if let Some((key, value)) = term.split_once("!=") {
                Term::NotEqual(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                Term::Equal(key.trim().to_owned(), value.trim().to_owned())
            } else {
                return Err(format!(
                    "unable to parse requirement: {term:?}: this server takes equality terms only"
                ));
            };
            let (Term::Equal(key, _) | Term::NotEqual(key, _)) = &parsed;
            if key.is_empty() {
                return Err(format!("unable to parse requirement: {term:?}: no key"));
            }
            terms.push(parsed);
        }
        Ok(Selector(terms))
    }

    /// Whether an object's `metadata.labels` match.
    pub(super) fn matches(&self, object: &Map<String, Value>) -> bool {
        let labels = object
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.0.iter().all(|term| match term {
            Term::Equal(key, value) => label(key) == Some(value.as_str()),
            Term::NotEqual(key, value) => label(key) != Some(value.as_str()),
        })
    }
}

/// `preconditions` of a `DeleteOptions`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Preconditions {
    pub(super) resource_version: Option<String>,
    pub(super) uid: Option<String>,
}

/// A request the fake server serves.
#[derive(Debug)]
pub(super) enum Call {
    Get {
        collection: Collection,
        name: String,
    },
    List {
        collection: Collection,
        selector: Selector,
        /// `None`: everything.
        limit: Option<usize>,
        continue_token: Option<String>,
    },
    Watch {
        collection: Collection,
        selector: Selector,
        /// `None` (absent, empty or `0`): the objects there now as
        /// `ADDED`, then the changes.
        from: Option<u64>,
    },
    Create {
        collection: Collection,
        object: Map<String, Value>,
    },
    Replace {
        collection: Collection,
        name: String,
        object: Map<String, Value>,
    },
    ReplaceStatus {
        collection: Collection,
        name: String,
        object: Map<String, Value>,
    },
    Delete {
        collection: Collection,
        name: String,
        preconditions: Preconditions,
    },
}

impl Call {
    /// The call `method` on `uri` with `body` makes, or the answer that
    /// refuses it.
    pub(super) fn parse(method: &Method, uri: &Uri, body: &[u8]) -> Result<Call, Refusal> {
        let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
        let (collection, name, status) = match segments.as_slice() {
            [
                "apis",
                group,
                version,
                "namespaces",
                namespace,
                plural,
                rest @ ..,
            ] => {
                let collection = Collection {
                    group: (*group).to_owned(),
                    version: (*version).to_owned(),
                    namespace: (*namespace).to_owned(),
                    plural: (*plural).to_owned(),
                };
                match rest {
                    [] => (collection, None, false),
                    [name] => (collection, Some((*name).to_owned()), false),
                    [name, "status"] => (collection, Some((*name).to_owned()), true),
                    _ => return Err(not_found_path(uri)),
                }
            }
            _ => return Err(not_found_path(uri)),
        };
        let query: HashMap<String, String> =
            form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let bad = |message: String| Refusal::new(StatusCode::BAD_REQUEST, "BadRequest", message);
        let selector =
            Selector::parse(query.get("labelSelector").map_or("", String::as_str)).map_err(bad)?;
        let object = || -> Result<Map<String, Value>, Refusal> {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(object)) => Ok(object),
                Ok(_) => Err(bad("the body is no JSON object".into())),
                Err(e) => Err(bad(format!("the body does not decode: {e}"))),
            }
        };
        Ok(match (method, name, status) {
            (&Method::GET, Some(name), false) => Call::Get { collection, name },
            (&Method::GET, None, false)
                if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) =>
            {
                let from = match query.get("resourceVersion").map(String::as_str) {
                    None | Some("" | "0") => None,
                    Some(version) => Some(version.parse().map_err(|_| {
                        bad(format!(
                            "{version:?} is not a resource version of this server"
                        ))
                    })?),
                };
                Call::Watch {
                    collection,
                    selector,
                    from,
                }
            }
            (&Method::GET, None, false) => {
                let limit = match query.get("limit") {
                    None => None,
                    Some(limit) => match limit.parse::<usize>() {
                        Ok(0) => None,
                        Ok(limit) => Some(limit),
                        Err(_) => return Err(bad(format!("limit {limit:?} is no number"))),
                    },
                };
                Call::List {
                    collection,
                    selector,
                    limit,
                    continue_token: query.get("continue").filter(|t| !t.is_empty()).cloned(),
                }
            }
            (&Method::POST, None, false) => Call::Create {
                collection,
                object: object()?,
            },
            (&Method::PUT, Some(name), false) => Call::Replace {
                collection,
                name,
                object: object()?,
            },
            (&Method::PUT, Some(name), true) => Call::ReplaceStatus {
                collection,
                name,
                object: object()?,
            },
            (&Method::DELETE, Some(name), false) => Call::Delete {
                collection,
                name,
                preconditions: if body.is_empty() {
                    Preconditions::default()
                } else {
                    preconditions(&object()?)
                },
            },
            _ => {
                return Err(Refusal::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    format!("{method} is not supported on {}", uri.path()),
                ));
            }
        })
    }
}

fn preconditions(options: &Map<String, Value>) -> Preconditions {
    let field = |name: &str| {
        options
            .get("preconditions")
            .and_then(|p| p.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Preconditions {
        resource_version: field("resourceVersion"),
        uid: field("uid"),
    }
}

fn not_found_path(uri: &Uri) -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "the server could not find the requested resource ({})",
            uri.path()
        ),
    )
}

/// A request refused: a `Status` answer of failure.
#[derive(Debug)]
pub(super) struct Refusal {
    code: StatusCode,
    reason: &'static str,
    message: String,
}

impl Refusal {
    pub(super) fn new(
        code: StatusCode,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Refusal {
        Refusal {
            code,
            reason,
            message: message.into(),
        }
    }

    pub(super) fn into_response(self) -> http::Response<FakeBody> {
        json(
            self.code,
            &json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": self.message,
                "reason": self.reason,
                "code": self.code.as_u16(),
            }),
        )
    }
}

/// A JSON answer.
pub(super) fn json(code: StatusCode, value: &Value) -> http::Response<FakeBody> {
    let body = Full::new(Bytes::from(value.to_string())).boxed_unsync();
    let mut response = http::Response::new(body);
    *response.status_mut() = code;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A `200` whose body is `lines`, each a JSON watch event and a newline.
pub(super) fn lines(lines: impl Stream<Item = Value> + Send + 'static) -> http::Response<FakeBody> {
    let frames = lines.map(|line| {
        let mut text = line.to_string();
        text.push('\n');
        Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(text)))
    });
    let mut response = http::Response::new(StreamBody::new(frames).boxed_unsync());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
