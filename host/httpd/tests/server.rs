//! The server over real sockets, with short timeouts: slow, idle and
//! surplus clients are cut off; streams, Host names and TLS client
//! certificates behave as documented.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use wasmbed_httpd::{HttpServer, HttpServerConfig, PeerCertificates, Refusal, ServerStats};

/// Generous bounds for "soon" on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(3);

fn config() -> HttpServerConfig {
    HttpServerConfig {
        max_connections: 64,
        max_connections_per_source: 64,
        max_anonymous_connections: None,
        header_read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        request_body_timeout: Duration::from_secs(30),
        tls_handshake_timeout: Duration::from_secs(30),
        shutdown_grace: Duration::from_millis(300),
        extra_allowed_hosts: Vec::new(),
    }
}

/// Set when a response body is dropped by the server.
#[derive(Clone, Default)]
struct Dropped(Arc<AtomicBool>);

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// An endless body of `chunk`, one every `every`.
fn endless(chunk: &'static [u8], every: Duration, dropped: Dropped) -> Body {
    let guard = SetOnDrop(dropped.0);
    Body::from_stream(futures_util::stream::unfold(
        guard,
        move |guard| async move {
            if !every.is_zero() {
                tokio::time::sleep(every).await;
            }
            Some((Ok::<_, std::io::Error>(Bytes::from_static(chunk)), guard))
        },
    ))
}

fn router(dropped: Dropped) -> Router {
    let big = dropped.clone();
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/echo", post(|body: Bytes| async move { body.len().to_string() }))
        .route("/slow", get(|| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            "done"
        }))
        .route(
            "/stream",
            get(move || async move { endless(b"data: tick\n\n", Duration::from_millis(100), dropped) }),
        )
        .route(
            "/big",
            get(move || async move { endless(&[b'x'; 64 * 1024], Duration::ZERO, big) }),
        )
        .route(
            "/peer",
            get(
                |ConnectInfo(peer): ConnectInfo<SocketAddr>,
                 certificates: Option<axum::Extension<PeerCertificates>>| async move {
                    let leaf = certificates
                        .and_then(|c| c.0.0.first().map(|cert| cert.as_ref().to_vec()))
                        .map(|der| der.len().to_string())
                        .unwrap_or_else(|| "none".into());
                    format!("{} {leaf}", peer.ip())
                },
            ),
        )
}

struct TestServer {
    addr: SocketAddr,
    stats: Arc<ServerStats>,
    dropped: Dropped,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    async fn start(config: HttpServerConfig) -> TestServer {
        Self::start_on("127.0.0.1:0", config, None).await
    }

    async fn start_on(
        bind: &str,
        config: HttpServerConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> TestServer {
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dropped = Dropped::default();
        let server = HttpServer::new(config).with_tls(tls);
        let stats = server.stats();
        let (stop, stopped) = oneshot::channel::<()>();
        let router = router(dropped.clone());
        let task = tokio::spawn(server.serve(listener, router, async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            stats,
            dropped,
            stop: Some(stop),
            task,
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// Waits until the server counts `n` open connections.
    async fn wait_open(&self, n: usize) {
        let deadline = Instant::now() + SLACK;
        while self.stats.open_connections() != n {
            assert!(
                Instant::now() < deadline,
                "{} connections open, not {n}",
                self.stats.open_connections()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(mut self) -> Duration {
        let started = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(SLACK * 2, self.task)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
        started.elapsed()
    }
}

/// A response read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Reads one response with a `Content-Length` body.
async fn read_answer(stream: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Answer> {
    let mut data = Vec::new();
    let mut byte = [0u8; 1];
    while !data.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        data.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&data).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    Ok(Answer { status, head, body })
}

async fn fetch(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    path: &str,
    host: &str,
) -> Answer {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_answer(stream).await.unwrap()
}

/// How long until the peer closes `stream` (reading and dropping whatever
/// arrives meanwhile); `None` if it is still open after `limit`.
async fn closed_after(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(500);
    let server = TestServer::start(HttpServerConfig {
        idle_timeout: idle,
        ..config()
    })
    .await;
    let mut stream = server.connect().await;
    assert_eq!(fetch(&mut stream, "/ok", "localhost").await.status, 200);
    // Still open well within the idle time: a second request is served.
    tokio::time::sleep(idle / 2).await;
    assert_eq!(fetch(&mut stream, "/ok", "localhost").await.status, 200);
    let closed = closed_after(&mut stream, idle + SLACK)
        .await
        .expect("the idle connection is closed");
    assert!(
        closed >= idle - Duration::from_millis(50),
        "closed after {closed:?}"
    );
    server.wait_open(0).await;
    // Idle closes are ordinary: not counted as refusals.
    assert_eq!(server.stats.refused(Refusal::HeaderReadTimeout), 0);
}

#[tokio::test]
async fn a_request_head_dripped_a_byte_at_a_time_is_dropped() {
    let header = Duration::from_millis(400);
    let server = TestServer::start(HttpServerConfig {
        header_read_timeout: header,
        ..config()
    })
    .await;
    let stream = server.connect().await;
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "GET /ok HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(200)
    );
    let started = Instant::now();
    let drip = tokio::spawn(async move {
        for byte in head.bytes() {
            if writer.write_all(&[byte]).await.is_err() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    });
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(header + SLACK, reader.read(&mut buf))
        .await
        .expect("the server closes the connection")
        .unwrap_or(0);
    assert_eq!(
        n,
        0,
        "no answer, just closed: {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= header - Duration::from_millis(50),
        "closed after {elapsed:?}"
    );
    // The whole head (4.7 s of dripping) was never sent.
    drip.abort();
    assert_eq!(server.stats.refused(Refusal::HeaderReadTimeout), 1);

    // A connection that sends nothing at all gets the same time.
    let mut silent = server.connect().await;
    let closed = closed_after(&mut silent, header + SLACK)
        .await
        .expect("closed");
    assert!(
        closed >= header - Duration::from_millis(50),
        "closed after {closed:?}"
    );
}

#[tokio::test]
async fn a_dripped_request_body_is_cut_with_408() {
    let body_timeout = Duration::from_millis(400);
    let server = TestServer::start(HttpServerConfig {
        request_body_timeout: body_timeout,
        ..config()
    })
    .await;
    // A body sent at once is fine.
    let mut stream = server.connect().await;
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let answer = read_answer(&mut stream).await.unwrap();
    assert_eq!((answer.status, answer.body.as_slice()), (200, &b"5"[..]));

    let stream = server.connect().await;
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let drip = tokio::spawn(async move {
        for _ in 0..100 {
            if writer.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let answer = tokio::time::timeout(body_timeout + SLACK, read_answer(&mut reader))
        .await
        .expect("an answer in time")
        .unwrap();
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(
        answer
            .head
            .to_ascii_lowercase()
            .contains("connection: close"),
        "{}",
        answer.head
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= body_timeout - Duration::from_millis(50),
        "after {elapsed:?}"
    );
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(SLACK, reader.read_to_end(&mut rest))
        .await
        .expect("closed");
    drip.abort();
    assert_eq!(server.stats.refused(Refusal::RequestBodyTimeout), 1);
}

#[tokio::test]
async fn beyond_the_connection_cap_new_connections_get_503_until_others_close() {
    let server = TestServer::start(HttpServerConfig {
        max_connections: 4,
        ..config()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(server.connect().await);
    }
    server.wait_open(4).await;

    for _ in 0..3 {
        let mut extra = server.connect().await;
        let answer = tokio::time::timeout(SLACK, read_answer(&mut extra))
            .await
            .expect("answered at once")
            .unwrap();
        assert_eq!(answer.status, 503, "{answer:?}");
        let mut rest = Vec::new();
        extra.read_to_end(&mut rest).await.unwrap();
    }
    assert_eq!(server.stats.refused(Refusal::ConnectionLimit), 3);
    // The held ones were not disturbed.
    assert_eq!(fetch(&mut held[0], "/ok", "localhost").await.status, 200);

    drop(held);
    server.wait_open(0).await;
    let mut stream = server.connect().await;
    assert_eq!(fetch(&mut stream, "/ok", "localhost").await.status, 200);
}

#[tokio::test]
async fn a_streaming_response_that_writes_stays_open_past_the_idle_timeout() {
    let idle = Duration::from_millis(300);
    let server = TestServer::start(HttpServerConfig {
        idle_timeout: idle,
        header_read_timeout: idle,
        ..config()
    })
    .await;
    let mut stream = server.connect().await;
    stream
        .write_all(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let open_for = idle * 4;
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    while started.elapsed() < open_for {
        let n = tokio::time::timeout(SLACK, stream.read(&mut buf))
            .await
            .expect("a tick in time")
            .unwrap();
        assert_ne!(n, 0, "the stream was closed after {:?}", started.elapsed());
        received.extend_from_slice(&buf[..n]);
    }
    let ticks = String::from_utf8_lossy(&received)
        .matches("data: tick")
        .count();
    assert!(ticks >= 5, "{ticks} ticks in {open_for:?}");
    assert!(!server.dropped.0.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_client_that_stops_reading_a_response_is_disconnected() {
    let idle = Duration::from_millis(300);
    let server = TestServer::start(HttpServerConfig {
        idle_timeout: idle,
        ..config()
    })
    .await;
    let mut stream = server.connect().await;
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // Never read: the socket buffers fill, the server's writes wait.
    let deadline = Instant::now() + SLACK * 2;
    while !server.dropped.0.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the server still writes to a client that does not read"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.stats.refused(Refusal::WriteStalled), 1);
    server.wait_open(0).await;
}

#[tokio::test]
async fn a_loopback_listener_answers_only_loopback_and_allowed_host_names() {
    let server = TestServer::start(HttpServerConfig {
        extra_allowed_hosts: vec!["gateway.internal".into()],
        ..config()
    })
    .await;
    let port = server.addr.port();
    let mut stream = server.connect().await;
    let refused = fetch(&mut stream, "/ok", "evil.example").await;
    assert_eq!(refused.status, 421);
    assert_eq!(
        fetch(&mut stream, "/ok", &format!("evil.example:{port}"))
            .await
            .status,
        421
    );
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_owned(),
        format!("gateway.internal:{port}"),
    ] {
        let answer = fetch(&mut stream, "/ok", &host).await;
        assert_eq!(
            (answer.status, answer.body.as_slice()),
            (200, &b"ok"[..]),
            "{host}"
        );
    }
    // An absolute URI names the host too.
    stream
        .write_all(b"GET http://evil.example/ok HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_answer(&mut stream).await.unwrap().status, 421);
    // No Host at all (HTTP/1.0).
    stream.write_all(b"GET /ok HTTP/1.0\r\n\r\n").await.unwrap();
    assert_eq!(read_answer(&mut stream).await.unwrap().status, 421);
    assert_eq!(server.stats.refused(Refusal::MisdirectedHost), 4);
}

/// This machine's address on its default route, if it has one.
fn non_loopback_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // No packet is sent: connecting a UDP socket only picks a route.
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn a_listener_on_every_address_checks_the_host_of_loopback_connections_only() {
    let server = TestServer::start_on("0.0.0.0:0", config(), None).await;
    // Made to 127.0.0.1: a web page reaching it through DNS rebinding.
    let mut stream = TcpStream::connect(("127.0.0.1", server.addr.port()))
        .await
        .unwrap();
    assert_eq!(fetch(&mut stream, "/ok", "evil.example").await.status, 421);
    let mut stream = TcpStream::connect(("127.0.0.1", server.addr.port()))
        .await
        .unwrap();
    assert_eq!(fetch(&mut stream, "/ok", "localhost").await.status, 200);
    // Made to the machine's other address: any host.
    let Some(ip) = non_loopback_address() else {
        eprintln!("SKIP part: this machine has no non-loopback address");
        return;
    };
    let mut stream = TcpStream::connect((ip, server.addr.port())).await.unwrap();
    assert_eq!(fetch(&mut stream, "/ok", "evil.example").await.status, 200);
}

#[tokio::test]
async fn one_source_cannot_take_every_connection() {
    let server = TestServer::start(HttpServerConfig {
        max_connections: 10,
        max_connections_per_source: 3,
        ..config()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(server.connect().await);
    }
    server.wait_open(3).await;
    let mut extra = server.connect().await;
    let answer = tokio::time::timeout(SLACK, read_answer(&mut extra))
        .await
        .expect("answered at once")
        .unwrap();
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(server.stats.refused(Refusal::SourceLimit), 1);
    assert_eq!(server.stats.refused(Refusal::ConnectionLimit), 0);
    // Another source still gets in (127.0.0.2 is another loopback address).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], server.addr.port())))
        .await
        .unwrap();
    assert_eq!(fetch(&mut other, "/ok", "localhost").await.status, 200);
    drop(held);
    server.wait_open(1).await;
    let mut stream = server.connect().await;
    assert_eq!(fetch(&mut stream, "/ok", "localhost").await.status, 200);
}

#[tokio::test]
async fn shutdown_lets_requests_finish_and_closes_streams_after_the_grace() {
    let server = TestServer::start(config()).await;
    let mut stream = server.connect().await;
    stream
        .write_all(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert_ne!(stream.read(&mut buf).await.unwrap(), 0);
    let mut slow = server.connect().await;
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    server.wait_open(2).await;
    let slow_answer = tokio::spawn(async move { read_answer(&mut slow).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let grace = config().shutdown_grace;
    let dropped = server.dropped.clone();
    let took = server.stop().await;
    let answer = slow_answer.await.unwrap().unwrap();
    assert_eq!((answer.status, answer.body.as_slice()), (200, &b"done"[..]));
    assert!(
        took >= grace - Duration::from_millis(50),
        "stopped after {took:?}"
    );
    assert!(took < grace + SLACK, "stopped after {took:?}");
    assert!(dropped.0.load(Ordering::SeqCst), "the stream was closed");
}

/// A CA, a server certificate for localhost and a client certificate.
struct Pki {
    ca: rustls::pki_types::CertificateDer<'static>,
    server: (
        rustls::pki_types::CertificateDer<'static>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
    client: (
        rustls::pki_types::CertificateDer<'static>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).unwrap();
        (
            cert.der().clone(),
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
    };
    Pki {
        ca: ca.der().clone(),
        server: leaf(
            vec!["localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        client: leaf(
            vec!["client.test".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(pki: &Pki) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    Arc::new(roots)
}

fn tls_server(pki: &Pki) -> Arc<rustls::ServerConfig> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(pki), provider())
            .allow_unauthenticated()
            .build()
            .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())
        .unwrap();
    // Offered h2: the server must still speak HTTP/1.1.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

async fn tls_connect(
    addr: SocketAddr,
    pki: &Pki,
    with_certificate: bool,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(pki));
    let mut config = if with_certificate {
        builder
            .with_client_auth_cert(vec![pki.client.0.clone()], pki.client.1.clone_key())
            .unwrap()
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

#[tokio::test]
async fn tls_clients_certificates_reach_the_handlers() {
    let pki = pki();
    let server = TestServer::start_on("127.0.0.1:0", config(), Some(tls_server(&pki))).await;

    let mut with = tls_connect(server.addr, &pki, true).await;
    assert_eq!(with.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let answer = fetch(&mut with, "/peer", "localhost").await;
    assert_eq!(answer.status, 200);
    let expected = format!("127.0.0.1 {}", pki.client.0.as_ref().len());
    assert_eq!(String::from_utf8_lossy(&answer.body), expected);
    // Every request of the connection carries them.
    let again = fetch(&mut with, "/peer", "localhost").await;
    assert_eq!(String::from_utf8_lossy(&again.body), expected);

    let mut without = tls_connect(server.addr, &pki, false).await;
    let answer = fetch(&mut without, "/peer", "localhost").await;
    assert_eq!(String::from_utf8_lossy(&answer.body), "127.0.0.1 none");
}

#[tokio::test]
async fn clients_without_a_certificate_share_a_few_places_of_their_own() {
    let pki = pki();
    let server = TestServer::start_on(
        "127.0.0.1:0",
        HttpServerConfig {
            max_anonymous_connections: Some(2),
            ..config()
        },
        Some(tls_server(&pki)),
    )
    .await;
    let mut anonymous = Vec::new();
    for _ in 0..2 {
        let mut client = tls_connect(server.addr, &pki, false).await;
        assert_eq!(fetch(&mut client, "/ok", "localhost").await.status, 200);
        anonymous.push(client);
    }
    // A third without a certificate is closed after its handshake...
    let mut third = tls_connect(server.addr, &pki, false).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(SLACK, third.read_to_end(&mut rest))
        .await
        .expect("closed");
    assert!(rest.is_empty());
    assert_eq!(server.stats.refused(Refusal::AnonymousLimit), 1);
    // ...while clients with one still get in.
    let mut with = tls_connect(server.addr, &pki, true).await;
    assert_eq!(fetch(&mut with, "/ok", "localhost").await.status, 200);
    drop(anonymous);
    server.wait_open(1).await;
    let mut again = tls_connect(server.addr, &pki, false).await;
    assert_eq!(fetch(&mut again, "/ok", "localhost").await.status, 200);
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_dropped_and_surplus_tls_connections_closed() {
    let pki = pki();
    let handshake = Duration::from_millis(400);
    let server = TestServer::start_on(
        "127.0.0.1:0",
        HttpServerConfig {
            tls_handshake_timeout: handshake,
            max_connections: 1,
            ..config()
        },
        Some(tls_server(&pki)),
    )
    .await;
    let mut silent = server.connect().await;
    server.wait_open(1).await;
    // Over the cap on TLS: closed without a plain-text answer.
    let mut extra = server.connect().await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(SLACK, extra.read_to_end(&mut rest))
        .await
        .expect("closed");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));

    let closed = closed_after(&mut silent, handshake + SLACK)
        .await
        .expect("closed");
    assert!(
        closed >= handshake - Duration::from_millis(100),
        "closed after {closed:?}"
    );
    assert_eq!(server.stats.refused(Refusal::TlsHandshakeTimeout), 1);
    server.wait_open(0).await;
    let mut client = tls_connect(server.addr, &pki, false).await;
    assert_eq!(fetch(&mut client, "/ok", "localhost").await.status, 200);
}
