//! The API server's answers as [`StoreError`]s, by whose fault: no `kube`
//! type leaves this crate.

use kube::core::ErrorResponse;
use wasmbed_api::model::Kind;
use wasmbed_api::store::StoreError;

/// What a request was about, for the error it may give.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// One object: a 404 means it is not there.
    Object(Kind, &'a str),
    /// An object to create: a 404 means, as for a [`Collection`](Self::Collection),
    /// that there is nowhere to create it.
    New(Kind, &'a str),
    /// The objects of a kind (list, watch): a 404 means the resource type
    /// or the namespace is missing from the cluster, which no retry of the
    /// same request fixes, and is no "not found" of an object.
    Collection(Kind),
}

impl Target<'_> {
    fn kind(self) -> Kind {
        match self {
            Target::Object(kind, _) | Target::New(kind, _) | Target::Collection(kind) => kind,
        }
    }
}

/// A failed request as a [`StoreError`].
pub(crate) fn from_kube(target: Target<'_>, error: kube::Error) -> StoreError {
    match error {
        kube::Error::Api(response) => from_response(target, &response),
        kube::Error::SerdeError(e) => {
            StoreError::Corrupt(format!("an answer of the API server does not decode: {e}"))
        }
        kube::Error::FromUtf8(e) => {
            StoreError::Corrupt(format!("an answer of the API server is not UTF-8: {e}"))
        }
        // The request could not be made from what was given (an empty
        // name, say).
        kube::Error::BuildRequest(e) => StoreError::Invalid(e.to_string()),
        // Connection, TLS, authentication setup, timeouts.
        other => StoreError::Unavailable(format!("Kubernetes API server: {other}")),
    }
}

/// An error answer (a `Status` body, in a response or a watch `ERROR`
/// event) as a [`StoreError`].
pub(crate) fn from_response(target: Target<'_>, response: &ErrorResponse) -> StoreError {
    let kind = target.kind().as_str();
    let detail = || {
        format!(
            "Kubernetes API server: {} {}: {}",
            response.code, response.reason, response.message
        )
    };
    match (response.code, target) {
        (404, Target::Object(_, name)) => StoreError::NotFound {
            kind,
            name: name.to_owned(),
        },
        (404, Target::New(..) | Target::Collection(_)) => StoreError::Unavailable(format!(
            "{} (are the CRDs installed and does the namespace exist?)",
            detail()
        )),
        (409, _) if response.reason == "AlreadyExists" => StoreError::AlreadyExists {
            kind,
            name: target_name(target),
        },
        (409, _) => StoreError::Conflict {
            kind,
            name: target_name(target),
        },
        (400 | 422, _) => StoreError::Invalid(detail()),
        (410, _) => StoreError::Expired(response.message.clone()),
        // 5xx, 401, 403, 429 and whatever else: the cluster cannot serve
        // us now; an operator may fix it (RBAC, a token) without us.
        _ => StoreError::Unavailable(detail()),
    }
}

fn target_name(target: Target<'_>) -> String {
    match target {
        Target::Object(_, name) | Target::New(_, name) => name.to_owned(),
        Target::Collection(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn answer(target: Target<'_>, code: u16, reason: &str) -> StoreError {
        from_response(
            target,
            &ErrorResponse {
                status: "Failure".into(),
                message: "told".into(),
                reason: reason.into(),
                code,
            },
        )
    }

    const BOARD: Target<'static> = Target::Object(Kind::Device, "board-1");

    #[test]
    fn each_status_code_maps_to_its_fault() {
        assert_eq!(
            answer(BOARD, 404, "NotFound"),
            StoreError::NotFound {
                kind: "Device",
                name: "board-1".into()
            }
        );
        assert_eq!(
            answer(BOARD, 409, "AlreadyExists"),
            StoreError::AlreadyExists {
                kind: "Device",
                name: "board-1".into()
            }
        );
        assert_eq!(
            answer(BOARD, 409, "Conflict"),
            StoreError::Conflict {
                kind: "Device",
                name: "board-1".into()
            }
        );
        assert!(
            matches!(answer(BOARD, 400, "BadRequest"), StoreError::Invalid(m) if m.contains("told"))
        );
        assert!(matches!(
            answer(BOARD, 422, "Invalid"),
            StoreError::Invalid(_)
        ));
        assert_eq!(
            answer(BOARD, 410, "Expired"),
            StoreError::Expired("told".into())
        );
        for (code, reason) in [
            (500, "InternalError"),
            (503, "ServiceUnavailable"),
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (429, "TooManyRequests"),
        ] {
            assert!(
                matches!(answer(BOARD, code, reason), StoreError::Unavailable(m) if m.contains(reason)),
                "{code}"
            );
        }
    }

    #[test]
    fn a_missing_collection_is_no_missing_object() {
        for target in [
            Target::Collection(Kind::Gateway),
            Target::New(Kind::Gateway, "gw"),
        ] {
            assert!(matches!(
                answer(target, 404, "NotFound"),
                StoreError::Unavailable(m) if m.contains("CRDs")
            ));
        }
        assert_eq!(
            answer(Target::New(Kind::Gateway, "gw"), 409, "AlreadyExists"),
            StoreError::AlreadyExists {
                kind: "Gateway",
                name: "gw".into()
            }
        );
    }

    #[test]
    fn an_answer_that_does_not_decode_is_corrupt() {
        let bad = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        assert!(matches!(
            from_kube(BOARD, kube::Error::SerdeError(bad)),
            StoreError::Corrupt(_)
        ));
    }
}
