//! The handshake baseline: a bare tokio-rustls accept loop with exactly
//! the gateway's server configuration (`wasmbed_pki::server_config`), on
//! the same multi-threaded tokio runtime the gateway uses.
//!
//! Per connection: TLS 1.3 handshake with a required client certificate,
//! one short message (as the gateway sends its first message right after
//! the handshake, so a client knows the server finished it), then echoes
//! what it reads until the client goes away (the heartbeat baseline).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use wasmbed_pki::Installation;

/// What the baseline sends after the handshake: about the size of the
/// gateway's first message (an enrollment challenge).
pub(crate) const GREETING: [u8; 48] = [0x5a; 48];

#[derive(Debug, clap::Args)]
pub(crate) struct BareArgs {
    /// Installation directory (`wasmbed certs init`).
    #[arg(long)]
    pki: PathBuf,
    /// Address to accept TLS connections on.
    #[arg(long)]
    listen: SocketAddr,
}

pub(crate) async fn serve(args: BareArgs) -> anyhow::Result<()> {
    let installation =
        Installation::load(&args.pki).with_context(|| format!("loading {}", args.pki.display()))?;
    let acceptor = TlsAcceptor::from(wasmbed_pki::server_config(&installation, None)?);
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(_) => {
                // Out of file descriptors and the like, as the gateway does.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
            let Ok(Ok(mut tls)) = handshake.await else {
                return;
            };
            if tls.write_all(&GREETING).await.is_err() || tls.flush().await.is_err() {
                return;
            }
            // Echo, as the heartbeat baseline: a record in, a record out.
            let mut buf = [0u8; 2048];
            while let Ok(n) = tls.read(&mut buf).await {
                if n == 0 || tls.write_all(&buf[..n]).await.is_err() || tls.flush().await.is_err() {
                    break;
                }
            }
            let _ = tls.shutdown().await;
        });
    }
}
