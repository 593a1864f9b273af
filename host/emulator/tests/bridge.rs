//! The TCP bridge over real sockets, with a plain TCP echo server as the
//! gateway.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::EchoGateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};
use wasmbed_emulator::{Bridge, BridgeConfig, BridgeCounters};

const LOCAL: &str = "127.0.0.1:0";
const PATIENCE: Duration = Duration::from_secs(10);

fn local() -> SocketAddr {
    LOCAL.parse().expect("address")
}

async fn listening_bridge(gateway: &str) -> (Bridge, SocketAddr) {
    let bridge = Bridge::start(BridgeConfig::listen("test", local(), gateway))
        .await
        .expect("bridge");
    let addr = bridge.local_addr().expect("listening");
    (bridge, addr)
}

/// Polls the counters until `done` holds.
async fn counters_until(bridge: &Bridge, done: impl Fn(&BridgeCounters) -> bool) -> BridgeCounters {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let counters = bridge.counters();
        if done(&counters) {
            return counters;
        }
        assert!(Instant::now() < deadline, "counters stuck at {counters:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads until end of stream (or a reset); fails after `PATIENCE`.
async fn expect_closed(stream: &mut TcpStream) {
    let mut buffer = [0u8; 1024];
    let closed = timeout(PATIENCE, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection was not closed");
}

fn payload(seed: u32, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

async fn round_trip(device: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    let (mut read, mut write) = device.split();
    let writer = async {
        write.write_all(data).await.expect("write");
    };
    let reader = async {
        let mut back = vec![0u8; data.len()];
        read.read_exact(&mut back).await.expect("read back");
        back
    };
    let ((), back) = timeout(PATIENCE, async { tokio::join!(writer, reader) })
        .await
        .expect("round trip in time");
    back
}

#[tokio::test]
async fn bytes_flow_both_ways_unchanged() {
    let gateway = EchoGateway::start().await;
    let (bridge, addr) = listening_bridge(&gateway.address()).await;
    let mut device = TcpStream::connect(addr).await.expect("connect");
    let data = payload(1, 300_000);
    assert_eq!(round_trip(&mut device, &data).await, data);
    let counters =
        counters_until(&bridge, |c| c.gateway_to_device_bytes == data.len() as u64).await;
    assert_eq!(counters.device_to_gateway_bytes, data.len() as u64);
    assert_eq!(counters.device_connections, 1);
    assert_eq!(counters.gateway_connections, 1);
    assert_eq!(counters.gateway_connect_failures, 0);
    assert_eq!(gateway.accepted(), 1);
}

#[tokio::test]
async fn the_gateway_is_connected_only_when_the_device_sends() {
    let gateway = EchoGateway::start().await;
    let (bridge, addr) = listening_bridge(&gateway.address()).await;
    let mut device = TcpStream::connect(addr).await.expect("connect");
    counters_until(&bridge, |c| c.device_connections == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        gateway.accepted(),
        0,
        "an idle device holds a gateway connection"
    );
    assert_eq!(bridge.counters().gateway_connections, 0);

    assert_eq!(
        round_trip(&mut device, b"ClientHello").await,
        b"ClientHello"
    );
    assert_eq!(gateway.accepted(), 1);
}

#[tokio::test]
async fn the_gateway_closing_closes_the_device_side() {
    let listener = TcpListener::bind(LOCAL).await.expect("bind");
    let gateway_addr = listener.local_addr().expect("addr");
    let gateway = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut first = [0u8; 5];
        stream.read_exact(&mut first).await.expect("first bytes");
        assert_eq!(&first, b"hello");
        stream.write_all(b"bye").await.expect("write");
        // Closing: the handshake failed, say.
    });
    let (_bridge, addr) = listening_bridge(&gateway_addr.to_string()).await;
    let mut device = TcpStream::connect(addr).await.expect("connect");
    device.write_all(b"hello").await.expect("write");
    let mut bye = [0u8; 3];
    timeout(PATIENCE, device.read_exact(&mut bye))
        .await
        .expect("in time")
        .expect("bye");
    assert_eq!(&bye, b"bye");
    expect_closed(&mut device).await;
    gateway.await.expect("gateway");
}

#[tokio::test]
async fn the_device_closing_closes_the_gateway_side() {
    let listener = TcpListener::bind(LOCAL).await.expect("bind");
    let gateway_addr = listener.local_addr().expect("addr");
    let gateway = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut received = Vec::new();
        // Returns when the bridge closes the connection.
        let _ = stream.read_to_end(&mut received).await;
        received
    });
    let (bridge, addr) = listening_bridge(&gateway_addr.to_string()).await;
    let mut device = TcpStream::connect(addr).await.expect("connect");
    device.write_all(b"some bytes").await.expect("write");
    counters_until(&bridge, |c| c.device_to_gateway_bytes == 10).await;
    drop(device);
    let received = timeout(PATIENCE, gateway)
        .await
        .expect("the gateway side was closed")
        .expect("gateway task");
    assert_eq!(received, b"some bytes");
}

#[tokio::test]
async fn an_unreachable_gateway_closes_the_device_and_the_bridge_keeps_serving() {
    // A port nothing listens on (yet).
    let port = {
        let probe = std::net::TcpListener::bind(LOCAL).expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let gateway_addr = format!("127.0.0.1:{port}");
    let (bridge, addr) = listening_bridge(&gateway_addr).await;

    let mut device = TcpStream::connect(addr).await.expect("connect");
    device.write_all(b"ClientHello").await.expect("write");
    expect_closed(&mut device).await;
    let counters = counters_until(&bridge, |c| c.gateway_connect_failures == 1).await;
    assert_eq!(counters.gateway_connections, 0);

    // The device reconnects, and now the gateway is up.
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the gateway port");
    let gateway = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut buffer = [0u8; 11];
        stream.read_exact(&mut buffer).await.expect("read");
        stream.write_all(&buffer).await.expect("echo");
        let _ = stream.read(&mut buffer).await;
    });
    let mut device = TcpStream::connect(addr).await.expect("reconnect");
    assert_eq!(
        round_trip(&mut device, b"ClientHello").await,
        b"ClientHello"
    );
    let counters = bridge.counters();
    assert_eq!(counters.device_connections, 2);
    assert_eq!(counters.gateway_connections, 1);
    assert_eq!(counters.gateway_connect_failures, 1);
    drop(device);
    timeout(PATIENCE, gateway)
        .await
        .expect("in time")
        .expect("gateway");
}

#[tokio::test]
async fn a_new_device_connection_replaces_the_old_pair() {
    let gateway = EchoGateway::start().await;
    let (bridge, addr) = listening_bridge(&gateway.address()).await;
    let mut first = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(round_trip(&mut first, b"one").await, b"one");
    let mut second = TcpStream::connect(addr).await.expect("connect again");
    counters_until(&bridge, |c| c.device_connections == 2).await;
    expect_closed(&mut first).await;
    assert_eq!(round_trip(&mut second, b"two").await, b"two");
    assert_eq!(gateway.accepted(), 2);
}

#[tokio::test]
async fn closing_the_bridge_closes_its_connections() {
    let gateway = EchoGateway::start().await;
    let (bridge, addr) = listening_bridge(&gateway.address()).await;
    let mut device = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(round_trip(&mut device, b"ping").await, b"ping");
    let counters = bridge.close().await;
    assert_eq!(counters.device_to_gateway_bytes, 4);
    expect_closed(&mut device).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is still open"
    );
}

#[tokio::test]
async fn a_connecting_bridge_reaches_a_listening_emulator_and_reconnects() {
    let gateway = EchoGateway::start().await;
    let emulator = TcpListener::bind(LOCAL).await.expect("bind");
    let emulator_addr = emulator.local_addr().expect("addr");
    let mut config = BridgeConfig::connect("renode-like", emulator_addr, &gateway.address());
    config.retry_interval = Duration::from_millis(50);
    let bridge = Bridge::start(config).await.expect("bridge");
    assert_eq!(bridge.local_addr(), None);

    let (mut uart, _) = timeout(PATIENCE, emulator.accept())
        .await
        .expect("the bridge connects")
        .expect("accept");
    assert_eq!(
        round_trip(&mut uart, b"from the device").await,
        b"from the device"
    );
    drop(uart);
    // The bridge comes back for the next session.
    let (mut uart, _) = timeout(PATIENCE, emulator.accept())
        .await
        .expect("the bridge reconnects")
        .expect("accept");
    assert_eq!(round_trip(&mut uart, b"again").await, b"again");
    assert_eq!(bridge.counters().device_connections, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_bridges_carry_their_own_payloads_concurrently() {
    let gateway = EchoGateway::start().await;
    let mut bridges = Vec::new();
    for _ in 0..50 {
        bridges.push(listening_bridge(&gateway.address()).await);
    }
    let mut devices = tokio::task::JoinSet::new();
    for (i, (_, addr)) in bridges.iter().enumerate() {
        let addr = *addr;
        let seed = u32::try_from(i).expect("small");
        devices.spawn(async move {
            let data = payload(
                seed + 100,
                20_000 + 97 * usize::try_from(seed).expect("small"),
            );
            let mut device = TcpStream::connect(addr).await.expect("connect");
            let back = round_trip(&mut device, &data).await;
            (seed, back == data, data.len())
        });
    }
    let mut lengths = vec![0usize; 50];
    while let Some(result) = devices.join_next().await {
        let (seed, same, len) = result.expect("device task");
        assert!(same, "device {seed} got someone else's bytes back");
        lengths[usize::try_from(seed).expect("small")] = len;
    }
    for (i, (bridge, _)) in bridges.iter().enumerate() {
        let len = lengths[i] as u64;
        let counters = counters_until(bridge, |c| c.gateway_to_device_bytes == len).await;
        assert_eq!(counters.device_to_gateway_bytes, len, "bridge {i}");
        assert_eq!(counters.gateway_connections, 1, "bridge {i}");
    }
    assert_eq!(gateway.accepted(), 50);
}

/// A TLS record with this content type and body.
fn record(content_type: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![content_type, 3, 3];
    bytes.extend(
        u16::try_from(body.len())
            .expect("a record's length")
            .to_be_bytes(),
    );
    bytes.extend(body);
    bytes
}

#[tokio::test]
async fn a_device_reset_behind_an_open_socket_gets_a_new_gateway_connection() {
    let gateway = EchoGateway::start().await;
    let (bridge, addr) = listening_bridge(&gateway.address()).await;
    let mut device = TcpStream::connect(addr).await.expect("connect");
    // A session: ClientHello, then application data.
    let hello = record(22, &[1, 0, 0, 2, 7, 7]);
    assert_eq!(round_trip(&mut device, &hello).await, hello);
    let data = record(23, &payload(5, 2_000));
    assert_eq!(round_trip(&mut device, &data).await, data);
    assert_eq!(gateway.accepted(), 1);

    // The device resets and says hello again on the same socket: the old
    // gateway connection is closed and the hello goes to a new one.
    let again = record(22, &[1, 0, 0, 2, 8, 8]);
    assert_eq!(round_trip(&mut device, &again).await, again);
    let counters = counters_until(&bridge, |c| c.gateway_connections == 2).await;
    assert_eq!(counters.device_connections, 1);
    assert_eq!(gateway.accepted(), 2);
    let more = record(23, &payload(6, 500));
    assert_eq!(round_trip(&mut device, &more).await, more);
    let counters = counters_until(&bridge, |c| {
        c.gateway_to_device_bytes == (hello.len() + data.len() + again.len() + more.len()) as u64
    })
    .await;
    assert_eq!(counters.gateway_connections, 2);

    // A retried hello before any application data is the same session.
    let (bridge, addr) = listening_bridge(&gateway.address()).await;
    let mut device = TcpStream::connect(addr).await.expect("connect");
    for _ in 0..2 {
        assert_eq!(round_trip(&mut device, &hello).await, hello);
    }
    assert_eq!(round_trip(&mut device, &data).await, data);
    assert_eq!(bridge.counters().gateway_connections, 1);
}
