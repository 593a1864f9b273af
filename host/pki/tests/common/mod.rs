//! A real TLS handshake between a rustls server and client over an
//! in-memory duplex stream, with the server's records sniffed on the wire.

#![allow(dead_code, unreachable_pub)]

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// TLS record content types.
pub const CHANGE_CIPHER_SPEC: u8 = 20;
pub const HANDSHAKE: u8 = 22;
pub const APPLICATION_DATA: u8 = 23;

/// One TLS record as seen on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub content_type: u8,
    /// Header included.
    pub wire_len: usize,
}

/// Splits a byte stream into TLS records.
#[derive(Debug, Default)]
pub struct RecordLog {
    pending: Vec<u8>,
    pub records: Vec<Record>,
}

impl RecordLog {
    fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while self.pending.len() >= 5 {
            let len = usize::from(u16::from_be_bytes([self.pending[3], self.pending[4]]));
            if self.pending.len() < 5 + len {
                break;
            }
            self.records.push(Record {
                content_type: self.pending[0],
                wire_len: 5 + len,
            });
            self.pending.drain(..5 + len);
        }
    }
}

/// The client's end of the stream, logging every byte the server sent
/// before the client's TLS stack sees it.
pub struct Sniffer {
    inner: DuplexStream,
    log: Arc<Mutex<RecordLog>>,
}

impl AsyncRead for Sniffer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let new = &buf.filled()[before..];
            self.log.lock().unwrap().feed(new);
        }
        poll
    }
}

impl AsyncWrite for Sniffer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What the server saw of a successful handshake.
#[derive(Debug)]
pub struct ServerSide {
    pub peer_certificates: Vec<CertificateDer<'static>>,
    pub alpn: Option<Vec<u8>>,
}

/// What the client saw.
#[derive(Debug)]
pub struct ClientSide {
    /// The server's records received by the time the handshake completed
    /// on the client.
    pub handshake_records: Vec<Record>,
    pub alpn: Option<Vec<u8>>,
    /// The application data received.
    pub received: Vec<u8>,
}

#[derive(Debug)]
pub struct Outcome {
    pub server: io::Result<ServerSide>,
    pub client: io::Result<ClientSide>,
    /// Every record the server sent.
    pub server_records: Vec<Record>,
}

/// The rustls error inside an I/O error from tokio-rustls.
pub fn tls_error(result: &io::Error) -> Option<&rustls::Error> {
    result.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Runs one connection: the server accepts, then sends `payload` bytes of
/// application data and closes; the client connects to `localhost` and
/// reads everything.
pub async fn connect(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    payload: usize,
) -> Outcome {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let log = Arc::new(Mutex::new(RecordLog::default()));
    let sniffer = Sniffer {
        inner: client_io,
        log: log.clone(),
    };

    let server_task = async move {
        let mut tls = TlsAcceptor::from(server).accept(server_io).await?;
        let (_, conn) = tls.get_ref();
        let side = ServerSide {
            peer_certificates: conn
                .peer_certificates()
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        };
        let data: Vec<u8> = b"wasmbed".iter().copied().cycle().take(payload).collect();
        tls.write_all(&data).await?;
        tls.shutdown().await?;
        Ok(side)
    };
    let client_log = log.clone();
    let client_task = async move {
        let name = ServerName::try_from("localhost").expect("server name");
        let mut tls = TlsConnector::from(client).connect(name, sniffer).await?;
        let handshake_records = client_log.lock().unwrap().records.clone();
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let mut received = Vec::new();
        tls.read_to_end(&mut received).await?;
        Ok(ClientSide {
            handshake_records,
            alpn,
            received,
        })
    };

    let (server, client) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(server_task, client_task)
    })
    .await
    .expect("the connection hung");
    let server_records = log.lock().unwrap().records.clone();
    Outcome {
        server,
        client,
        server_records,
    }
}
