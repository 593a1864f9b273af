//! `wasmbed certs`: the CAs and certificates of a new installation.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use wasmbed_pki::{ControlCa, Installation, InstallationOptions, control_file_names};

#[derive(Debug, Subcommand)]
pub(crate) enum CertsCommand {
    /// Create the gateway CA, the gateway certificate, the device CA, the
    /// claim CA and the shared claim certificate for a new installation,
    /// and its control PKI: the control CA, the API server's client
    /// certificate for gateways and its TLS server certificate.
    ///
    /// Private keys are written with mode 0600. The gateway CA and claim
    /// CA keys are not kept: they sign their one certificate and are gone.
    Init {
        /// Directory to write the PEM files to (created if missing).
        #[arg(long, default_value = "wasmbed-pki")]
        dir: PathBuf,
        /// DNS name of the gateway (repeatable; default: localhost).
        #[arg(long = "dns")]
        dns_names: Vec<String>,
        /// IP address of the gateway (repeatable; default: 127.0.0.1 and ::1).
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        /// Replace an existing installation in DIR.
        #[arg(long)]
        force: bool,
    },
    /// Check that the files in DIR form a consistent installation.
    Check {
        #[arg(long, default_value = "wasmbed-pki")]
        dir: PathBuf,
    },
    /// Add the control PKI to an installation made before it existed (the
    /// control CA, api-client.pem, api-server.pem); files already there are
    /// kept.
    Control {
        #[arg(long, default_value = "wasmbed-pki")]
        dir: PathBuf,
    },
    /// Issue a client certificate of the control CA, for an operator or a
    /// tool that calls gateways' HTTP interfaces (curl --cert NAME.pem
    /// --key NAME-key.pem --cacert gateway-ca.pem).
    IssueClient {
        /// The installation (it must hold control-ca-key.pem).
        #[arg(long, default_value = "wasmbed-pki")]
        dir: PathBuf,
        /// Who the certificate is for; gateways log it with every change.
        #[arg(long)]
        name: String,
        /// Where to write NAME.pem and NAME-key.pem (default: DIR).
        #[arg(long)]
        out: Option<PathBuf>,
        /// How long the certificate is valid: a lost one works until then
        /// (or until the control CA is replaced).
        #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
        valid_for: std::time::Duration,
    },
}

pub(crate) fn run(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Init {
            dir,
            dns_names,
            ips,
            force,
        } => {
            let mut options = InstallationOptions::default();
            if !dns_names.is_empty() {
                options.gateway_dns_names = dns_names;
            }
            if !ips.is_empty() {
                options.gateway_ips = ips;
            }
            let installation = Installation::create(&options).context("creating certificates")?;
            installation
                .save(&dir, force)
                .with_context(|| format!("writing {}", dir.display()))?;
            if force {
                for name in [
                    control_file_names::CONTROL_CA,
                    control_file_names::API_CLIENT,
                    control_file_names::API_SERVER,
                ] {
                    let _ = std::fs::remove_file(dir.join(name));
                }
                let _ = std::fs::remove_file(dir.join(control_file_names::CONTROL_CA_KEY));
            }
            wasmbed_pki::ensure_control_pki(&dir, &options)
                .with_context(|| format!("writing the control PKI to {}", dir.display()))?;
            println!("created a Wasmbed installation in {}", dir.display());
            println!(
                "  gateway names: {:?} {:?}",
                options.gateway_dns_names, options.gateway_ips
            );
            println!(
                "  keep the *-key.pem files secret; devices need gateway-ca.pem, claim.pem and claim-key.pem"
            );
            println!(
                "  gateways need control-ca.pem (not its key); the API server calls them with api-client.pem"
            );
            Ok(())
        }
        CertsCommand::Check { dir } => {
            Installation::load(&dir).with_context(|| format!("loading {}", dir.display()))?;
            ControlCa::load(&dir).with_context(|| {
                format!(
                    "loading the control CA in {} (add one with `wasmbed certs control --dir {}`)",
                    dir.display(),
                    dir.display()
                )
            })?;
            println!("{}: a consistent Wasmbed installation", dir.display());
            Ok(())
        }
        CertsCommand::Control { dir } => {
            Installation::load(&dir).with_context(|| format!("loading {}", dir.display()))?;
            let written = wasmbed_pki::ensure_control_pki(&dir, &InstallationOptions::default())
                .with_context(|| format!("writing the control PKI to {}", dir.display()))?;
            if written.is_empty() {
                println!("{}: the control PKI is complete", dir.display());
            } else {
                println!("{}: wrote {}", dir.display(), written.join(", "));
            }
            Ok(())
        }
        CertsCommand::IssueClient {
            dir,
            name,
            out,
            valid_for,
        } => {
            let ca = ControlCa::load(&dir)
                .with_context(|| format!("loading the control CA in {}", dir.display()))?;
            let options = InstallationOptions {
                validity: valid_for,
                ..InstallationOptions::default()
            };
            let credential = ca
                .issue_client(&name, &options)
                .context("issuing the certificate")?;
            let out = out.unwrap_or(dir);
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let (cert, key) = (format!("{name}.pem"), format!("{name}-key.pem"));
            for file in [&cert, &key] {
                anyhow::ensure!(
                    !out.join(file).exists(),
                    "{} exists; not replacing it",
                    out.join(file).display()
                );
            }
            credential
                .save(&out, &cert, &key)
                .with_context(|| format!("writing to {}", out.display()))?;
            println!(
                "wrote {} and {} (\"Wasmbed control: {name}\", valid for {})",
                out.join(&cert).display(),
                out.join(&key).display(),
                humantime::format_duration(valid_for)
            );
            Ok(())
        }
    }
}
