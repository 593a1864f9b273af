//! `wasmbed api`: the API server (REST API, controller, and its store:
//! SQLite, or Kubernetes custom resources) as a long-running process.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::net::TcpListener;
use wasmbed_api::controller::ControllerConfig;
use wasmbed_api::http::events::{
    DEFAULT_MAX_STREAMS, DEFAULT_MAX_STREAMS_PER_TOKEN, EventStreamLimits,
};
use wasmbed_api::server::{ApiServer, ApiServerConfig, FD_RESERVE, http_max_connections_for};
use wasmbed_api::store::{DirStore, ResourceStore, SqliteStore, Store};
use wasmbed_httpd::HttpServerConfig;

use crate::open_files;

#[derive(Debug, Args)]
pub(crate) struct ApiServerArgs {
    /// Address of the REST API. On a loopback address it answers only
    /// requests whose Host is a loopback name (or an --allowed-host);
    /// elsewhere it warns that it serves plain HTTP.
    #[arg(long, default_value = wasmbed_api::server::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// SQLite database file; created if missing. It holds everything with
    /// `--store sqlite`, and the module blobs, token hashes and execution
    /// results with `--store kubernetes` unless --data is given (put it on
    /// a volume; one replica only).
    #[arg(long, default_value = "wasmbed-api.db", env = "WASMBED_API_DB")]
    db: PathBuf,
    /// With `--store kubernetes`: keep module blobs, token hashes and
    /// execution results as files in this directory instead of --db, so
    /// that several replicas can share it (a ReadWriteMany volume). Each
    /// then reads the tokens again every --token-reload, and the holder of
    /// the Lease alone reconciles.
    #[arg(long, env = "WASMBED_API_DATA")]
    data: Option<PathBuf>,
    /// With --data: how often the tokens are read again, which is how long
    /// a token made or revoked at one replica may take to count at another.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    token_reload: Duration,
    /// Where devices, applications and gateways are kept: `sqlite` (in
    /// --db, the default), `sqlite:PATH` (another file), or
    /// `kubernetes[:NAMESPACE]`: as Device, Application and Gateway custom
    /// resources (`wasmbed.io/v1alpha1`; install the CRDs with `kubectl
    /// apply -k deploy/kubernetes`) in NAMESPACE (default `wasmbed`), with
    /// the in-cluster configuration or the kubeconfig (`KUBECONFIG`,
    /// `~/.kube/config`).
    #[arg(long, default_value = "sqlite", env = "WASMBED_API_STORE", value_parser = parse_store)]
    store: StoreChoice,
    /// How often the controllers poll each gateway, and the deployments of
    /// each application placed on devices.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    reconcile_interval: Duration,
    /// The installation (`wasmbed certs init`) whose gateways this server
    /// manages: it trusts their certificates by gateway-ca.pem and calls
    /// them with api-client.pem. Without it, gateways refuse the controller.
    /// With its device CA key (device-ca-key.pem) this server also signs
    /// the enrollments of gateways started with `--enroll-via-api`
    /// (POST /api/v1/enrollments); without that key they are refused.
    #[arg(long, env = "WASMBED_PKI")]
    pki: Option<PathBuf>,
    /// Serve the REST API over TLS with this certificate (PEM), e.g. the
    /// installation's api-server.pem (clients then trust control-ca.pem:
    /// `wasmbed ... --api-ca`). Needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM, PKCS#8) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    #[command(flatten)]
    http: HttpArgs,
}

/// The controller's TLS client of gateways, from an installation: trusts
/// its gateway CA, presents its api-client.pem.
pub(crate) fn gateway_client_tls(
    pki: &std::path::Path,
) -> anyhow::Result<std::sync::Arc<rustls::ClientConfig>> {
    use wasmbed_pki::control_file_names as names;
    let gateway_ca = wasmbed_pki::load_certificate(&pki.join(wasmbed_pki::file_names::GATEWAY_CA))
        .with_context(|| format!("loading the gateway CA of {}", pki.display()))?;
    let client = wasmbed_pki::Credential::load(
        &pki.join(names::API_CLIENT),
        &pki.join(names::API_CLIENT_KEY),
    )
    .with_context(|| {
        format!(
            "loading the API server's client certificate in {} (add it with `wasmbed certs control --dir {}`)",
            pki.display(),
            pki.display()
        )
    })?;
    Ok(wasmbed_pki::control_client_config(&gateway_ca, &client)?)
}

/// The REST API's connection limits and timeouts (also used by `wasmbed up`).
#[derive(Debug, Args)]
pub(crate) struct HttpArgs {
    /// Most open connections; more are answered 503 [default: 512, fewer
    /// when the open-files limit is low].
    #[arg(long)]
    max_connections: Option<usize>,
    /// Time a client has to send a request's line and headers (and, on a
    /// new connection, its first request); slower ones are disconnected.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this long
    /// without a byte (an open event stream is a request in flight).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Time a client has to send a request's body (a module upload);
    /// slower ones get 408.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    request_body_timeout: Duration,
    /// A Host name answered besides loopback names when listening on
    /// loopback, e.g. the one a port forward reaches the API by: `name`
    /// (any port) or `name:port`. Repeatable.
    #[arg(long = "allowed-host", value_name = "HOST")]
    allowed_hosts: Vec<String>,
    /// Most event streams (GET /api/v1/events, one per dashboard tab) open
    /// with one token; more get 429.
    #[arg(long, default_value_t = DEFAULT_MAX_STREAMS_PER_TOKEN)]
    max_event_streams_per_token: usize,
    /// Most event streams open in all; more get 429.
    #[arg(long, default_value_t = DEFAULT_MAX_STREAMS)]
    max_event_streams: usize,
}

impl HttpArgs {
    /// The HTTP settings for a process that may have `open_files` files
    /// open (less what else shares the process).
    pub(crate) fn http_config(&self, open_files: Option<u64>) -> HttpServerConfig {
        let default_cap = http_max_connections_for(open_files.unwrap_or(u64::MAX));
        if let Some(open_files) = open_files {
            let room = usize::try_from(open_files.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
            open_files::warn_if_above("--max-connections", self.max_connections, room, open_files);
        }
        HttpServerConfig {
            max_connections: self.max_connections.unwrap_or(default_cap),
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            request_body_timeout: self.request_body_timeout,
            extra_allowed_hosts: self.allowed_hosts.clone(),
            ..HttpServerConfig::default()
        }
    }

    pub(crate) fn event_limits(&self) -> EventStreamLimits {
        EventStreamLimits {
            per_token: self.max_event_streams_per_token,
            total: self.max_event_streams,
        }
    }
}

/// Where `wasmbed api` keeps its resources (`--store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreChoice {
    /// In SQLite: the file given, or --db.
    Sqlite(Option<PathBuf>),
    /// As custom resources in this namespace.
    Kubernetes(String),
}

fn parse_store(text: &str) -> Result<StoreChoice, String> {
    let (kind, rest) = match text.split_once(':') {
        Some((kind, rest)) => (kind, Some(rest)),
        None => (text, None),
    };
    match (kind, rest) {
        ("sqlite", None) => Ok(StoreChoice::Sqlite(None)),
        ("sqlite", Some(path)) if !path.is_empty() => Ok(StoreChoice::Sqlite(Some(path.into()))),
        ("kubernetes", None) => Ok(StoreChoice::Kubernetes(
            wasmbed_k8s::DEFAULT_NAMESPACE.to_owned(),
        )),
        ("kubernetes", Some(namespace)) if wasmbed_api::http::validate_name(namespace).is_ok() => {
            Ok(StoreChoice::Kubernetes(namespace.to_owned()))
        }
        _ => Err(format!(
            "{text:?}: expected sqlite, sqlite:PATH, kubernetes or kubernetes:NAMESPACE"
        )),
    }
}

/// Opens the server over the store `--store` names; with `data`, blobs,
/// tokens and results are files there (replicas share them).
async fn open_server(
    choice: &StoreChoice,
    data: Option<&std::path::Path>,
    config: &mut ApiServerConfig,
) -> anyhow::Result<ApiServer> {
    match choice {
        StoreChoice::Sqlite(_) if data.is_some() => {
            anyhow::bail!(
                "--data is for --store kubernetes (replicas sharing a volume); with --store sqlite everything is in the database"
            )
        }
        StoreChoice::Sqlite(path) => {
            if let Some(path) = path {
                config.db = path.clone();
            }
            Ok(ApiServer::open(config).await?)
        }
        StoreChoice::Kubernetes(namespace) => {
            let resources = wasmbed_k8s::KubeStore::connect(namespace.as_str())
                .await
                .context("connecting to the Kubernetes API server")?;
            let resources = Arc::new(resources);
            // The pod's name, as the Events' reporting instance.
            let instance = std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| "wasmbed-api".to_owned());
            config.controller.events = Arc::new(wasmbed_k8s::KubeEvents::new(
                resources.client(),
                namespace,
                &instance,
            ));
            // Several replicas serve the REST API; the Lease's holder alone
            // reconciles.
            config.leadership = Arc::new(wasmbed_k8s::KubeLease::new(
                resources.client(),
                namespace,
                &instance,
            ));
            let (store, kept_in) = beside(resources.clone(), data, config)?;
            tracing::info!(%namespace, blobs_tokens_results = %kept_in, "resources in Kubernetes");
            Ok(ApiServer::over(store, config).await?)
        }
    }
}

/// The store of `resources` (Kubernetes) with blobs, tokens, results and
/// enrollments beside them: files in `data`, re-reading the tokens every
/// `config.token_reload`, or SQLite in --db; and where they are, for logs.
fn beside(
    resources: Arc<dyn ResourceStore>,
    data: Option<&std::path::Path>,
    config: &ApiServerConfig,
) -> anyhow::Result<(Store, String)> {
    Ok(match data {
        Some(dir) => {
            let files = Arc::new(
                DirStore::open(dir).with_context(|| format!("opening {}", dir.display()))?,
            );
            let kept_in = format!("files in {} (shared)", dir.display());
            (Store::beside(resources, files), kept_in)
        }
        None => {
            let local = Arc::new(
                SqliteStore::open(&config.db)
                    .with_context(|| format!("opening {}", config.db.display()))?,
            );
            let kept_in = format!("SQLite in {} (this replica only)", config.db.display());
            (Store::beside(resources, local), kept_in)
        }
    })
}

/// The device CA of the installation in `pki`, to sign the enrollments
/// gateways forward; `None` (logged) when it has no usable device CA key:
/// the API server serves all the rest.
fn enrollment_signer(pki: &std::path::Path) -> Option<Arc<wasmbed_pki::DeviceIssuer>> {
    let issuer = wasmbed_pki::load_device_issuer(pki);
    match issuer {
        Ok(issuer) => {
            tracing::info!(pki = %pki.display(), "enrollments forwarded by gateways are signed here");
            Some(Arc::new(issuer))
        }
        Err(e) => {
            tracing::warn!(pki = %pki.display(), error = %e, "no device CA to sign enrollments with: gateways started with --enroll-via-api are refused (503)");
            None
        }
    }
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
    let open_files = open_files::raise();
    let gateway_tls = args.pki.as_deref().map(gateway_client_tls).transpose()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let credential = wasmbed_pki::Credential::load(cert, key)
                .with_context(|| format!("loading the TLS certificate {}", cert.display()))?;
            Some(wasmbed_pki::plain_server_config(&credential)?)
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut config = ApiServerConfig {
        listen: args.listen,
        db: args.db,
        controller: ControllerConfig {
            interval: args.reconcile_interval,
            gateway_tls,
            ..ControllerConfig::default()
        },
        http: args.http.http_config(open_files),
        events: args.http.event_limits(),
        tls,
        leadership: Arc::new(wasmbed_api::controller::leader::AlwaysLeader),
        token_reload: args.data.is_some().then_some(args.token_reload),
        device_issuer: args.pki.as_deref().and_then(enrollment_signer),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let server = open_server(&args.store, args.data.as_deref(), &mut config).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the API port {}", config.listen))?;
        if let Some(token) = server.admin_token() {
            announce_admin_token(token);
        }
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(
            stdout,
            "API server on {scheme}://{}/",
            listener.local_addr()?
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        args: ApiServerArgs,
    }

    #[test]
    fn store_choices_parse_and_bad_ones_say_what_is_expected() {
        let store = |args: &[&str]| {
            Command::try_parse_from([&["api"][..], args].concat()).map(|c| c.args.store)
        };
        assert_eq!(store(&[]).ok(), Some(StoreChoice::Sqlite(None)));
        assert_eq!(
            store(&["--store", "sqlite:/var/lib/api.db"]).ok(),
            Some(StoreChoice::Sqlite(Some("/var/lib/api.db".into())))
        );
        assert_eq!(
            store(&["--store", "kubernetes"]).ok(),
            Some(StoreChoice::Kubernetes("wasmbed".into()))
        );
        assert_eq!(
            store(&["--store", "kubernetes:edge"]).ok(),
            Some(StoreChoice::Kubernetes("edge".into()))
        );
        for bad in ["etcd", "sqlite:", "kubernetes:Not_A_Namespace", ""] {
            let error = store(&["--store", bad]).expect_err(bad).to_string();
            assert!(
                error.contains("expected sqlite, sqlite:PATH"),
                "{bad}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn the_kubernetes_store_without_a_cluster_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        // No in-cluster environment and a kubeconfig that is not there.
        // SAFETY: the test changes no other environment variable, and no
        // other thread of this test binary reads these.
        unsafe {
            std::env::remove_var("KUBERNETES_SERVICE_HOST");
            std::env::set_var("KUBECONFIG", dir.path().join("no-such-kubeconfig"));
        }
        let mut config = ApiServerConfig {
            db: dir.path().join("api.db"),
            ..ApiServerConfig::default()
        };
        let error = open_server(
            &StoreChoice::Kubernetes("wasmbed".into()),
            None,
            &mut config,
        )
        .await
        .expect_err("no cluster");
        let text = format!("{error:#}");
        assert!(
            text.contains("connecting to the Kubernetes API server"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn data_is_refused_with_the_sqlite_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = ApiServerConfig {
            db: dir.path().join("api.db"),
            ..ApiServerConfig::default()
        };
        let error = open_server(&StoreChoice::Sqlite(None), Some(dir.path()), &mut config)
            .await
            .expect_err("refused");
        assert!(
            format!("{error:#}").contains("--data is for --store kubernetes"),
            "{error:#}"
        );
        assert!(!config.db.exists(), "nothing was opened");
    }

    #[test]
    fn the_flags_defaults_are_the_servers_defaults() {
        let command = Command::try_parse_from(["api"]).expect("parse");
        let http = command.args.http.http_config(Some(1024));
        assert_eq!(
            http,
            HttpServerConfig {
                max_connections: 512,
                ..HttpServerConfig::default()
            }
        );
        assert_eq!(
            command.args.http.event_limits(),
            EventStreamLimits::default()
        );
        // A low open-files limit lowers the default cap, not a given one.
        assert_eq!(
            command.args.http.http_config(Some(256)).max_connections,
            128
        );
        let command = Command::try_parse_from([
            "api",
            "--max-connections",
            "1000",
            "--allowed-host",
            "api.lan",
            "--idle-timeout",
            "5s",
        ])
        .expect("parse");
        let http = command.args.http.http_config(Some(256));
        assert_eq!(http.max_connections, 1000);
        assert_eq!(http.extra_allowed_hosts, ["api.lan"]);
        assert_eq!(http.idle_timeout, Duration::from_secs(5));
    }
}
