//! `wasmbed certs`: the CAs and certificates of a new installation.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use wasmbed_pki::{Installation, InstallationOptions};

#[derive(Debug, Subcommand)]
pub(crate) enum CertsCommand {
    /// Create the gateway CA, the gateway certificate, the device CA, the
    /// claim CA and the shared claim certificate for a new installation.
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
            println!("created a Wasmbed installation in {}", dir.display());
            println!(
                "  gateway names: {:?} {:?}",
                options.gateway_dns_names, options.gateway_ips
            );
            println!(
                "  keep device-ca-key.pem and gateway-key.pem secret; devices need gateway-ca.pem, claim.pem and claim-key.pem"
            );
            Ok(())
        }
        CertsCommand::Check { dir } => {
            Installation::load(&dir).with_context(|| format!("loading {}", dir.display()))?;
            println!("{}: a consistent Wasmbed installation", dir.display());
            Ok(())
        }
    }
}
