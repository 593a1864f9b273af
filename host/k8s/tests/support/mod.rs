//! The mocked API server (`tower-test`) the request scenarios talk to.

#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{Handle, SendResponse};

/// The mocked API server's side: requests come in, answers go out.
pub struct ApiServer(pub Handle<Request<Body>, Response<Body>>);

impl ApiServer {
    /// The next request, which must be `method` on `uri` (path and query);
    /// its body as JSON (`Null` when empty).
    pub async fn expect(
        &mut self,
        method: Method,
        uri: &str,
    ) -> (Value, SendResponse<Response<Body>>) {
        let (request, send) = tokio::time::timeout(Duration::from_secs(5), self.0.next_request())
            .await
            .expect("a request within 5 s")
            .expect("a request");
        assert_eq!(request.method(), method, "method of {}", request.uri());
        assert_eq!(request.uri().to_string(), uri);
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (body, send)
    }

    /// Whether the store made no other request (once it is dropped).
    pub async fn done(mut self) {
        let next = tokio::time::timeout(Duration::from_secs(5), self.0.next_request())
            .await
            .expect("the client went away");
        assert!(
            next.is_none(),
            "an unexpected request: {:?}",
            next.map(|r| r.0)
        );
    }
}

pub fn answer(send: SendResponse<Response<Body>>, code: u16, body: &Value) {
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

/// An error answer as the API server gives it.
pub fn status(code: u16, reason: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("told {reason}"), "reason": reason, "code": code,
    })
}
