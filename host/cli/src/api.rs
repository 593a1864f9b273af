//! `wasmbed api`: the API server (REST API, controller, SQLite store) as a
//! long-running process.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::net::TcpListener;
use wasmbed_api::controller::ControllerConfig;
use wasmbed_api::server::{ApiServer, ApiServerConfig};

#[derive(Debug, Args)]
pub(crate) struct ApiServerArgs {
    /// Address of the REST API.
    #[arg(long, default_value = wasmbed_api::server::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// SQLite database file; created if missing.
    #[arg(long, default_value = "wasmbed-api.db", env = "WASMBED_API_DB")]
    db: PathBuf,
    /// Longest time between two passes of the controller.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    reconcile_interval: Duration,
}

/// Prints the admin token of a new database, the only time it is shown.
pub(crate) fn announce_admin_token(token: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "admin token: {token}\n  save this token now: it is shown only once (only its hash is stored).\n  use it with `--token` or `export WASMBED_TOKEN={token}`;\n  make narrower tokens (gateway, operator, read-only) with `wasmbed token create`"
    );
    let _ = stdout.flush();
}

pub(crate) fn run(args: ApiServerArgs) -> anyhow::Result<()> {
    let config = ApiServerConfig {
        listen: args.listen,
        db: args.db,
        controller: ControllerConfig {
            interval: args.reconcile_interval,
            ..ControllerConfig::default()
        },
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let server = ApiServer::open(&config)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the API port {}", config.listen))?;
        if let Some(token) = server.admin_token() {
            announce_admin_token(token);
        }
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "API server on http://{}/", listener.local_addr()?);
        let _ = stdout.flush();
        drop(stdout);
        server
            .serve(listener, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        anyhow::Ok(())
    })
}
