//! `cargo xtask schemathesis`: fuzzes the API server and a gateway against
//! their own OpenAPI documents with Schemathesis, from the project's
//! virtual environment ([`crate::venv`]).
//!
//! - The API server: builds and starts `host/api/examples/serve.rs` (the
//!   API on a free loopback port with a fresh SQLite database), then runs
//!   `schemathesis run http://ADDR/openapi.json -H "Authorization: Bearer
//!   TOKEN" --checks all ...`.
//! - A gateway: the real `wasmbed gateway` of a fresh installation
//!   (`wasmbed certs init`), called over mutual TLS with the API server's
//!   control certificate: `schemathesis run https://localhost:PORT/openapi.json
//!   --tls-verify gateway-ca.pem --request-cert api-client.pem ...`.
//!
//! Each with a bounded number of examples per operation. Fails on any
//! failed check: a server error, a response that does not match the
//! schema, a request the server should have refused, and so on. The JUnit
//! reports go to `target/schemathesis/{api,gateway}`.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, bail};

use crate::{cmd, venv};

/// The Schemathesis command, in the project's virtual environment.
const PROGRAM: &str = "schemathesis";

/// Test cases per API operation and phase; about 25 s in all.
pub(crate) const DEFAULT_MAX_EXAMPLES: u32 = 100;

/// Checks left out unless `--all-checks`. `positive_data_acceptance`
/// expects every request the schema allows to be accepted, but a module
/// must be valid WebAssembly, which no JSON schema can say: random base64
/// is refused with `invalid_module`, rightly. (Names, labels and boards
/// are also checked more strictly than the schema says.)
pub(crate) const LENIENT_CHECKS: [&str; 1] = ["positive_data_acceptance"];

/// Fuzzes the API server, then a gateway.
pub(crate) fn run(root: &Path, max_examples: u32, all_checks: bool) -> anyhow::Result<()> {
    run_api(root, max_examples, all_checks)?;
    run_gateway(root, max_examples, all_checks)
}

fn run_api(root: &Path, max_examples: u32, all_checks: bool) -> anyhow::Result<()> {
    let venv = venv::ensure(root)?;
    cmd::run(cmd::cargo(root).args(["build", "-p", "wasmbed-api", "--example", "serve"]))?;
    let target = cmd::target_dir(root)?;
    let serve = target.join("debug").join("examples").join("serve");
    let mut server = Server(
        Command::new(&serve)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", serve.display()))?,
    );
    let stdout = server.0.stdout.take().context("no stdout")?;
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading the server's output")?;
        let ready = line == "ready";
        lines.push(line);
        if ready {
            break;
        }
    }
    let (url, token) = parse_ready(&lines)?;
    println!("xtask: API server at {url}");
    let mut args = vec![
        "run".to_owned(),
        format!("{url}/openapi.json"),
        "--header".to_owned(),
        format!("Authorization: Bearer {token}"),
    ];
    args.extend(common_arguments(max_examples, all_checks));
    let result = schemathesis(root, &venv, "api", &args);
    drop(server);
    result
}

/// Runs Schemathesis with `args` and its report in
/// `target/schemathesis/NAME`.
fn schemathesis(root: &Path, venv: &venv::Venv, name: &str, args: &[String]) -> anyhow::Result<()> {
    let report = cmd::target_dir(root)?.join("schemathesis").join(name);
    // Its caches (.schemathesis/) go there too, not into the work tree.
    std::fs::create_dir_all(&report).with_context(|| format!("creating {}", report.display()))?;
    let mut st = Command::new(venv.program(PROGRAM));
    st.current_dir(&report)
        .args(args)
        .arg("--report-dir")
        .arg(&report);
    let result = cmd::run(&mut st);
    println!(
        "xtask: Schemathesis JUnit report in {}",
        cmd::show(root, &report)
    );
    Ok(result?)
}

/// Starts the real `wasmbed gateway` of a new installation on free loopback
/// ports and fuzzes its HTTP interface over mutual TLS.
fn run_gateway(root: &Path, max_examples: u32, all_checks: bool) -> anyhow::Result<()> {
    let venv = venv::ensure(root)?;
    cmd::run(cmd::cargo(root).args(["build", "-p", "wasmbed-cli"]))?;
    let target = cmd::target_dir(root)?;
    let wasmbed = target.join("debug").join("wasmbed");
    // The gateway's installation and database, new for each run and kept
    // afterwards for a look.
    let state = target.join("schemathesis").join("gateway-state");
    match std::fs::remove_dir_all(&state) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", state.display()));
        }
        _ => {}
    }
    std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    let pki = state.join("pki");
    cmd::run(
        Command::new(&wasmbed)
            .args(["certs", "init", "--dir"])
            .arg(&pki),
    )?;
    let (devices, http) = (free_port()?, free_port()?);
    let server = Server(
        Command::new(&wasmbed)
            .args(["--log-level", "warn", "gateway", "--pki"])
            .arg(&pki)
            .arg("--db")
            .arg(state.join("gateway.db"))
            .args(["--listen", &format!("127.0.0.1:{devices}")])
            .args(["--http", &format!("127.0.0.1:{http}")])
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", wasmbed.display()))?,
    );
    println!("xtask: gateway at https://localhost:{http}");
    let file = |name: &str| pki.join(name).display().to_string();
    let mut args = gateway_arguments(
        http,
        &file("gateway-ca.pem"),
        &file("api-client.pem"),
        &file("api-client-key.pem"),
    );
    args.extend(common_arguments(max_examples, all_checks));
    let result = schemathesis(root, &venv, "gateway", &args);
    drop(server);
    result
}

/// The start of `schemathesis` arguments for a gateway's HTTP interface.
fn gateway_arguments(port: u16, ca: &str, cert: &str, key: &str) -> Vec<String> {
    [
        "run",
        &format!("https://localhost:{port}/openapi.json"),
        "--tls-verify",
        ca,
        "--request-cert",
        cert,
        "--request-cert-key",
        key,
    ]
    .map(str::to_owned)
    .to_vec()
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Kills the server when dropped, whatever happened.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The URL and admin token from the server's `listening URL`,
/// `admin-token TOKEN` and `ready` lines.
fn parse_ready(lines: &[String]) -> anyhow::Result<(String, String)> {
    if lines.last().map(String::as_str) != Some("ready") {
        bail!(
            "the API server stopped before it was ready; it printed: {:?}",
            lines
        );
    }
    let find = |prefix: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::to_owned)
    };
    let url = find("listening ").context("the API server printed no `listening` line")?;
    let token = find("admin-token ").context("the API server printed no admin token")?;
    Ok((url, token))
}

/// The `schemathesis run` arguments after the target's: checks, examples,
/// no state left in the work tree, JUnit report.
fn common_arguments(max_examples: u32, all_checks: bool) -> Vec<String> {
    let mut args = vec!["--checks".to_owned(), "all".to_owned()];
    if !all_checks {
        args.push("--exclude-checks".to_owned());
        args.push(LENIENT_CHECKS.join(","));
    }
    args.extend([
        "--max-examples".to_owned(),
        max_examples.to_string(),
        "--wait-for-schema".to_owned(),
        "10".to_owned(),
        // No example database left in the work tree.
        "--generation-database".to_owned(),
        "none".to_owned(),
        "--no-color".to_owned(),
        "--report".to_owned(),
        "junit".to_owned(),
    ]);
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn reads_the_url_and_token() -> anyhow::Result<()> {
        let (url, token) = parse_ready(&lines(&[
            "listening http://127.0.0.1:4000",
            "admin-token wbd_abc",
            "ready",
        ]))?;
        assert_eq!(url, "http://127.0.0.1:4000");
        assert_eq!(token, "wbd_abc");
        Ok(())
    }

    #[test]
    fn a_server_that_stops_early_or_has_no_token_is_an_error() {
        assert!(parse_ready(&lines(&["listening http://127.0.0.1:4000"])).is_err());
        assert!(parse_ready(&lines(&["listening http://127.0.0.1:4000", "ready"])).is_err());
        assert!(parse_ready(&[]).is_err());
    }

    #[test]
    fn runs_every_check_but_the_lenient_ones_unless_asked() {
        let joined = common_arguments(7, false).join(" ");
        assert!(joined.starts_with("--checks all"));
        assert!(joined.contains("--exclude-checks positive_data_acceptance"));
        assert!(joined.contains("--max-examples 7"));
        let all = common_arguments(7, true);
        assert!(!all.iter().any(|a| a == "--exclude-checks"));
    }

    #[test]
    fn calls_a_gateway_over_mutual_tls() {
        let joined = gateway_arguments(4001, "ca.pem", "c.pem", "k.pem").join(" ");
        assert_eq!(
            joined,
            "run https://localhost:4001/openapi.json --tls-verify ca.pem \
             --request-cert c.pem --request-cert-key k.pem"
        );
    }
}
