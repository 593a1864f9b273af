//! The one shape of every error answer.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable and machine-readable: `bad_request`, `unauthorized`,
    /// `not_found`, `invalid_module`, `too_many_pending`, ...
    pub code: String,
    /// For people; never parsed.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_body_keeps_its_json() {
        let json = r#"{"code":"not_found","message":"deployment not found"}"#;
        let body: ErrorBody = serde_json::from_str(json).expect("decodes");
        assert_eq!(body.code, "not_found");
        assert_eq!(serde_json::to_string(&body).expect("encodes"), json);
    }
}
