//! `cargo xtask schemathesis`: fuzzes the API server against its own
//! OpenAPI document with Schemathesis, from the project's virtual
//! environment ([`crate::venv`]).
//!
//! Builds and starts `host/api/examples/serve.rs` (the API on a free
//! loopback port with a fresh SQLite database), then runs
//! `schemathesis run http://ADDR/openapi.json -H "Authorization: Bearer
//! TOKEN" --checks all ...` with a bounded number of examples per
//! operation. Fails on any failed check: a server error, a response that
//! does not match the schema, a request the API should have refused, and
//! so on. The JUnit report goes to `target/schemathesis`.

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

pub(crate) fn run(root: &Path, max_examples: u32, all_checks: bool) -> anyhow::Result<()> {
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
    let report = target.join("schemathesis");
    // Its caches (.schemathesis/) go there too, not into the work tree.
    std::fs::create_dir_all(&report).with_context(|| format!("creating {}", report.display()))?;
    let mut st = Command::new(venv.program(PROGRAM));
    st.current_dir(&report)
        .args(arguments(&url, &token, max_examples, all_checks))
        .arg("--report-dir")
        .arg(&report);
    let result = cmd::run(&mut st);
    println!(
        "xtask: Schemathesis JUnit report in {}",
        cmd::show(root, &report)
    );
    drop(server);
    Ok(result?)
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

/// `schemathesis` arguments, but for the report directory.
fn arguments(url: &str, token: &str, max_examples: u32, all_checks: bool) -> Vec<String> {
    let mut args = vec![
        "run".to_owned(),
        format!("{url}/openapi.json"),
        "--header".to_owned(),
        format!("Authorization: Bearer {token}"),
        "--checks".to_owned(),
        "all".to_owned(),
    ];
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
        let args = arguments("http://h:1", "wbd_t", 7, false);
        let joined = args.join(" ");
        assert!(
            joined.starts_with("run http://h:1/openapi.json --header Authorization: Bearer wbd_t")
        );
        assert!(joined.contains("--checks all"));
        assert!(joined.contains("--exclude-checks positive_data_acceptance"));
        assert!(joined.contains("--max-examples 7"));
        let all = arguments("http://h:1", "wbd_t", 7, true);
        assert!(!all.iter().any(|a| a == "--exclude-checks"));
    }
}
