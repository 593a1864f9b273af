//! The API server's HTTP limits over real sockets: connection cap,
//! slow and idle clients, the Host check of a loopback bind, and the
//! bounds on open event streams.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::TestApi;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wasmbed_api::http::events::{EventStreamLimits, EventStreams};
use wasmbed_api::server::{ApiServer, ApiServerConfig};
use wasmbed_httpd::HttpServerConfig;

const SLACK: Duration = Duration::from_secs(5);

/// `GET path` with `Host: host` on a new connection; the status code.
async fn status_with_host(addr: SocketAddr, path: &str, host: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Whether the server closes `stream` within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let started = Instant::now();
    loop {
        let Some(left) = limit.checked_sub(started.elapsed()) else {
            return false;
        };
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_applies_its_http_limits() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Long enough for the third connection below to arrive while the two
    // silent ones are still held, even on a loaded machine.
    let timeout = Duration::from_millis(1500);
    let config = ApiServerConfig {
        db: dir.path().join("api.db"),
        http: HttpServerConfig {
            max_connections: 2,
            header_read_timeout: timeout,
            idle_timeout: timeout,
            ..HttpServerConfig::default()
        },
        ..ApiServerConfig::default()
    };
    let server = ApiServer::open(&config).await.expect("open");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));

    // DNS rebinding: a page of evil.example resolved to 127.0.0.1.
    assert_eq!(
        status_with_host(addr, "/healthz", "evil.example").await,
        421
    );
    assert_eq!(
        status_with_host(addr, "/healthz", &format!("evil.example:{}", addr.port())).await,
        421
    );
    assert_eq!(
        status_with_host(addr, "/healthz", &format!("localhost:{}", addr.port())).await,
        200
    );
    assert_eq!(
        status_with_host(addr, "/healthz", &format!("127.0.0.1:{}", addr.port())).await,
        200
    );

    // Two silent connections take every place: a third is refused at once.
    let mut silent = [
        TcpStream::connect(addr).await.expect("connect"),
        TcpStream::connect(addr).await.expect("connect"),
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(addr).await.expect("connect");
    let mut answer = String::new();
    tokio::time::timeout(SLACK, third.read_to_string(&mut answer))
        .await
        .expect("answered at once")
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    // ... until the silent ones are dropped for sending no request.
    for stream in &mut silent {
        assert!(closed_within(stream, timeout + SLACK).await);
    }
    let deadline = Instant::now() + SLACK;
    loop {
        let status = status_with_host(addr, "/healthz", "localhost").await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    stop.send(()).expect("stop");
    task.await.expect("join").expect("served");
}

/// Opens `GET /api/v1/events` with `token`; the response (its body the
/// stream) or its status and problem document.
async fn open_stream(
    addr: SocketAddr,
    token: &str,
) -> Result<reqwest::Response, (u16, Value, String)> {
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/api/v1/events"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    if response.status() == 200 {
        return Ok(response);
    }
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Err((
        status,
        response.json().await.unwrap_or(Value::Null),
        retry_after,
    ))
}

async fn wait_streams(streams: &EventStreams, n: usize) {
    let deadline = Instant::now() + SLACK;
    while streams.open_streams() != n {
        assert!(
            Instant::now() < deadline,
            "{} streams open, not {n}",
            streams.open_streams()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_bounded_per_token_and_in_all_and_freed_on_disconnect() {
    let mut api = TestApi::in_memory().await;
    api.state.streams = EventStreams::new(EventStreamLimits {
        per_token: 2,
        total: 3,
    });
    let streams = api.state.streams.clone();
    let addr = api.serve().await;

    let first = open_stream(addr, &api.admin).await.expect("first stream");
    let _second = open_stream(addr, &api.admin).await.expect("second stream");
    let (status, problem, retry_after) = open_stream(addr, &api.admin)
        .await
        .expect_err("a third stream of one token");
    assert_eq!(status, 429);
    assert_eq!(problem["code"], "too_many_streams", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("this token"),
        "{problem}"
    );
    assert_eq!(retry_after, "5");

    // Another token still has room, until the total is reached.
    let _reader = open_stream(addr, &api.reader)
        .await
        .expect("reader's stream");
    let (status, problem, _) = open_stream(addr, &api.reader)
        .await
        .expect_err("a fourth stream in all");
    assert_eq!(status, 429);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("server has 3"),
        "{problem}"
    );
    // A bad token is still a 401, not a 429.
    assert_eq!(open_stream(addr, "wbd_nope").await.expect_err("no").0, 401);

    // A client going away frees its place.
    drop(first);
    wait_streams(&streams, 2).await;
    let _again = open_stream(addr, &api.admin).await.expect("room again");
    assert_eq!(streams.open_streams(), 3);
}
