//! `wasmbed token ...`: the API server's bearer tokens (create, list,
//! revoke). Every command needs an admin token.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::client::segment;
use crate::resources::{ApiArgs, Output, block_on, client, list, print_json, say, table, text};

#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Make a token. It is printed once, alone on stdout (what it is goes
    /// to stderr): only its hash is kept.
    #[command(after_long_help = "\
Examples:
  wasmbed token create --name edge-1 --role gateway --gateway edge-1
      for `wasmbed gateway --name edge-1 --api-token ...`: it may only \
register and update gateway edge-1
  wasmbed token create --name gateways --role gateway --gateway 'wasmbed-gateway-*'
      one token for every pod of a StatefulSet: it registers the gateways \
whose names start with wasmbed-gateway-, and no other
  wasmbed token create --name ci --role operator --expires-in 30d
  export WASMBED_TOKEN=$(wasmbed token create --name dashboard --role read-only)

Tokens never expire unless made with --expires-in; a warning says so.")]
    Create(CreateArgs),
    /// List the tokens: id, name, role, gateway, when made, when they
    /// expire (never the tokens themselves).
    List,
    /// Revoke a token by its id (see `wasmbed token list`): refused from
    /// the next request on. The last admin token cannot be revoked.
    Revoke {
        /// The token's id, as listed.
        id: String,
    },
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TokenRole {
    /// Everything, tokens included.
    Admin,
    /// Create, change and delete devices and applications; read the rest.
    Operator,
    /// Read everything but tokens.
    ReadOnly,
    /// Register and update one gateway (--gateway) and nothing else: the
    /// token `wasmbed gateway --api-token` needs.
    Gateway,
}

impl TokenRole {
    /// The role as the API spells it.
    fn api_name(self) -> &'static str {
        match self {
            TokenRole::Admin => "admin",
            TokenRole::Operator => "operator",
            TokenRole::ReadOnly => "read_only",
            TokenRole::Gateway => "gateway",
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// What the token is for, e.g. edge-1 or ci (lowercase letters,
    /// digits and '-').
    #[arg(long)]
    name: String,
    /// What the token may do.
    #[arg(long, value_enum)]
    role: TokenRole,
    /// With --role gateway: the name of the gateway (its `--name`) the
    /// token registers, or the start of the names it registers followed by
    /// `*` (`wasmbed-gateway-*`).
    #[arg(long, required_if_eq("role", "gateway"))]
    gateway: Option<String>,
    /// Refuse the token after this long, e.g. 30d, 12h, 90m; without it,
    /// the token never expires.
    #[arg(long, value_parser = humantime::parse_duration)]
    expires_in: Option<Duration>,
}

/// The body of `POST /api/v1/tokens`.
fn create_body(args: &CreateArgs) -> anyhow::Result<Value> {
    if args.gateway.is_some() && args.role != TokenRole::Gateway {
        bail!("--gateway is only for --role gateway");
    }
    let mut body = json!({ "name": args.name, "role": args.role.api_name() });
    if let Some(gateway) = &args.gateway {
        body["gateway"] = json!(gateway);
    }
    if let Some(lifetime) = args.expires_in {
        // Whole seconds, rounded up: a token never outlives what was asked
        // by less than asked.
        let seconds = lifetime.as_secs() + u64::from(lifetime.subsec_nanos() > 0);
        if seconds == 0 {
            bail!("--expires-in must be at least 1s");
        }
        body["expires_in_s"] = json!(seconds);
    }
    Ok(body)
}

/// A time in milliseconds since the Unix epoch, as RFC 3339 (UTC).
fn time_text(ms: &Value) -> String {
    match ms.as_u64() {
        Some(ms) => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        None => "-".to_owned(),
    }
}

fn expiry_text(token: &Value) -> String {
    match (&token["expires_at"], token["expired"].as_bool()) {
        (Value::Null, _) => "never".to_owned(),
        (at, Some(true)) => format!("{} (expired)", time_text(at)),
        (at, _) => time_text(at),
    }
}

/// The tokens as a table.
pub(crate) fn token_table(tokens: &Value) -> String {
    let rows: Vec<Vec<String>> = list(tokens)
        .iter()
        .map(|t| {
            vec![
                text(&t["id"]),
                text(&t["name"]),
                text(&t["role"]),
                text(&t["gateway"]),
                time_text(&t["created_at"]),
                expiry_text(t),
            ]
        })
        .collect();
    table(
        &["ID", "NAME", "ROLE", "GATEWAY", "CREATED", "EXPIRES"],
        &rows,
    )
}

/// What a new token is, for stderr.
fn created_text(created: &Value) -> String {
    let mut what = format!(
        "token {} ({}) made for role {}",
        text(&created["id"]),
        text(&created["name"]),
        text(&created["role"])
    );
    if let Some(gateway) = created["gateway"].as_str() {
        what.push_str(&format!(", bound to gateway {gateway}"));
    }
    match created["expires_at"] {
        Value::Null => what.push_str(&format!(
            "\nwarning: it never expires; revoke it with `wasmbed token revoke {}` when it is no longer needed (or make it with --expires-in)",
            text(&created["id"])
        )),
        ref at => what.push_str(&format!("; it expires at {}", time_text(at))),
    }
    what.push_str("\nsave it now: it is shown only once");
    what
}

pub(crate) fn run(args: TokenArgs) -> anyhow::Result<()> {
    let api = client(&args.api)?;
    let output = args.api.output();
    block_on(async move {
        match args.command {
            TokenCommand::Create(create) => {
                let created = api.post("/api/v1/tokens", &create_body(&create)?).await?;
                match output {
                    Output::Json => print_json(&created),
                    Output::Text => {
                        eprintln!("{}", created_text(&created));
                        say(&text(&created["token"]));
                        Ok(())
                    }
                }
            }
            TokenCommand::List => {
                let tokens = api.get("/api/v1/tokens").await?;
                match output {
                    Output::Json => print_json(&tokens),
                    Output::Text => {
                        say(&token_table(&tokens));
                        Ok(())
                    }
                }
            }
            TokenCommand::Revoke { id } => {
                let answer = api
                    .delete(&format!("/api/v1/tokens/{}", segment(&id)))
                    .await?;
                match output {
                    Output::Json => print_json(&answer),
                    Output::Text => {
                        say(&format!("token {id} revoked"));
                        Ok(())
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(role: TokenRole, gateway: Option<&str>, expires_in: Option<&str>) -> CreateArgs {
        CreateArgs {
            name: "edge-1".into(),
            role,
            gateway: gateway.map(str::to_owned),
            expires_in: expires_in.map(|d| humantime::parse_duration(d).expect("duration")),
        }
    }

    #[test]
    fn create_bodies_have_the_api_shape() -> anyhow::Result<()> {
        assert_eq!(
            create_body(&args(TokenRole::Gateway, Some("edge-1"), Some("30d")))?,
            json!({ "name": "edge-1", "role": "gateway", "gateway": "edge-1", "expires_in_s": 2_592_000 })
        );
        assert_eq!(
            create_body(&args(TokenRole::ReadOnly, None, None))?,
            json!({ "name": "edge-1", "role": "read_only" })
        );
        assert_eq!(
            create_body(&args(TokenRole::Operator, None, Some("1500ms")))?["expires_in_s"],
            2
        );
        assert!(create_body(&args(TokenRole::Admin, Some("edge-1"), None)).is_err());
        assert!(create_body(&args(TokenRole::Admin, None, Some("0s"))).is_err());
        Ok(())
    }

    #[test]
    fn the_list_shows_roles_gateways_and_expiry() {
        let tokens = json!([
            {"id": "0123456789abcdef", "name": "admin", "role": "admin", "gateway": null,
             "created_at": 0, "expires_at": null, "expired": false},
            {"id": "fedcba9876543210", "name": "edge-1", "role": "gateway", "gateway": "edge-1",
             "created_at": 1_700_000_000_000u64, "expires_at": 1_700_000_060_000u64, "expired": true},
        ]);
        let out = token_table(&tokens);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("ID"), "{out}");
        assert!(lines[1].contains("1970-01-01T00:00:00Z"), "{out}");
        assert!(lines[1].ends_with("never"), "{out}");
        assert!(lines[2].contains("gateway  edge-1"), "{out}");
        assert!(
            lines[2].ends_with("2023-11-14T22:14:20Z (expired)"),
            "{out}"
        );
    }

    #[test]
    fn a_token_without_expiry_is_warned_about() {
        let created = json!({"id": "0123456789abcdef", "name": "ci", "role": "read_only",
            "gateway": null, "expires_at": null, "token": "wbd_x"});
        let said = created_text(&created);
        assert!(said.contains("never expires"), "{said}");
        assert!(
            said.contains("wasmbed token revoke 0123456789abcdef"),
            "{said}"
        );
        assert!(!said.contains("wbd_x"), "the token goes to stdout only");
        let expiring = json!({"id": "1", "name": "ci", "role": "gateway", "gateway": "edge-1",
            "expires_at": 0, "token": "wbd_x"});
        let said = created_text(&expiring);
        assert!(!said.contains("never"), "{said}");
        assert!(said.contains("bound to gateway edge-1"), "{said}");
    }
}
