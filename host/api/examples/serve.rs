//! A bare API server for tests and benchmarks: serves `http::app` on a
//! loopback port (through `wasmbed-httpd`, as the API server does) with a SQLite store, optionally with the controller.
//!
//! ```text
//! cargo run -p wasmbed-api --example serve -- [--db PATH] [--listen ADDR] [--controller]
//! ```
//!
//! Prints `listening http://ADDR` and, when the store had no admin token
//! yet, `admin-token TOKEN`, then `ready`; serves until killed. Without
//! `--db` the store is a fresh database in a temporary directory.
#![allow(clippy::print_stdout)] // it tells its caller where it listens

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use wasmbed_api::controller::{Controller, ControllerConfig};
use wasmbed_api::http::{AppState, Auth, app};
use wasmbed_api::store::{SqliteStore, Store};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Default)]
struct Args {
    db: Option<PathBuf>,
    listen: Option<String>,
    controller: bool,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, Error> {
    let mut args = Args::default();
    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "--db" => args.db = Some(argv.next().ok_or("--db takes a path")?.into()),
            "--listen" => args.listen = Some(argv.next().ok_or("--listen takes an address")?),
            "--controller" => args.controller = true,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = parse(std::env::args().skip(1))?;
    let temp = tempfile::tempdir()?;
    let db = args.db.unwrap_or_else(|| temp.path().join("api.db"));
    let store = Store::sqlite(SqliteStore::open(&db)?);
    let (auth, token) = Auth::bootstrap(&store).await?;
    let listener =
        tokio::net::TcpListener::bind(args.listen.as_deref().unwrap_or("127.0.0.1:0")).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening http://{}", listener.local_addr()?)?;
    if let Some(token) = token {
        writeln!(out, "admin-token {token}")?;
    }
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);
    if args.controller {
        let config = ControllerConfig {
            interval: Duration::from_millis(200),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            ..ControllerConfig::default()
        };
        let controller = Controller::new(&store, config);
        tokio::spawn(controller.run(std::future::pending()));
    }
    // Signs enrollments as `wasmbed api --pki` does, with a device CA of
    // its own.
    let installation =
        wasmbed_pki::Installation::create(&wasmbed_pki::InstallationOptions::default())?;
    let state = AppState::new(store, auth)
        .with_device_issuer(std::sync::Arc::new(installation.device_issuer()?));
    let router = app(state);
    let config = wasmbed_httpd::HttpServerConfig::default();
    wasmbed_httpd::serve(listener, router, None, config, std::future::pending()).await?;
    Ok(())
}
