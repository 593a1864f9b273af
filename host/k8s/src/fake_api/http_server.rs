//! The fake server over real HTTP, for a client in another process (a
//! `wasmbed api` a test spawns), and the kubeconfig that points it there.
//! Test double only: plain HTTP, no authentication, meant for loopback.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::FakeApiServer;

/// Most connections served at once; further ones wait to be accepted.
/// A client holds one per open watch and a few for requests.
const MAX_CONNECTIONS: usize = 256;

impl FakeApiServer {
    /// Serves this server (its clones share the objects) over HTTP/1.1 on
    /// `listener` until the returned future is dropped: each connection on
    /// a task of its own, watches streamed as they happen. A test double:
    /// no TLS, no authentication; give it a loopback listener.
    pub async fn serve(self, listener: TcpListener) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return; // never closed
            };
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                // A connection that failed before it was accepted, or no
                // file descriptor left: try again shortly.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let server = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.answer(request).await) }
                });
                // A client that goes away mid-answer is no error to report.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                drop(slot);
            });
        }
    }
}

/// Writes to `path` (mode 0600, replacing what is there) a kubeconfig
/// whose current context is the fake server at `server` over plain HTTP,
/// with no credentials, and `namespace` as its default namespace: what
/// `kube::Client::try_default()` (and `kubectl`) find with `KUBECONFIG`
/// set to `path`.
pub fn write_kubeconfig(path: &Path, server: SocketAddr, namespace: &str) -> std::io::Result<()> {
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": format!("http://{server}")}}],
        "users": [{"name": "fake", "user": {}}],
        "contexts": [{
            "name": "fake",
            "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
        }],
        "current-context": "fake",
    });
    let text = serde_yaml::to_string(&config).map_err(std::io::Error::other)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    // A file that was there keeps its mode through `open`.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(text.as_bytes())?;
    file.sync_all()
}
