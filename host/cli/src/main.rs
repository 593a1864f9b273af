//! `wasmbed`: the operator's command for a Wasmbed installation.
#![allow(clippy::print_stdout)] // a command-line tool prints by design

mod api;
mod bridge;
mod certs;
mod client;
mod emulated;
mod emulator;
mod gateway;
mod logging;
mod open_files;
mod register;
mod resources;
mod sim;
mod tokens;
mod up;

use clap::{Parser, Subcommand};

/// Deploy WebAssembly modules to fleets of microcontrollers.
#[derive(Debug, Parser)]
#[command(name = "wasmbed", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    logging: logging::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or inspect the certificates of an installation.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Run the device gateway (TLS port for devices, HTTP/JSON for operators).
    Gateway(gateway::GatewayArgs),
    /// Simulate a fleet of devices running the real agent (for tests and load).
    Sim(sim::SimArgs),
    /// Run firmware on emulated boards (QEMU, Renode) as devices.
    #[command(subcommand)]
    Emulator(emulator::EmulatorCommand),
    /// Bridge emulated devices' link UARTs (TCP) to the gateway.
    Bridge(bridge::BridgeArgs),
    /// Run the API server: REST API, controller and store.
    Api(api::ApiServerArgs),
    /// Devices of the API server (list, get, create, delete).
    Device(resources::DeviceArgs),
    /// Applications of the API server (deploy, list, get, delete, results).
    App(resources::AppArgs),
    /// Bearer tokens of the API server (create, list, revoke); needs an
    /// admin token.
    Token(tokens::TokenArgs),
    /// Run a local installation in one process: gateway, API server, emulated devices.
    Up(up::UpArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(&cli.logging) {
        eprintln!("wasmbed: {e:#}");
        return std::process::ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Certs(command) => certs::run(command),
        Command::Gateway(args) => gateway::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Emulator(command) => emulator::run(command),
        Command::Bridge(args) => bridge::run(args),
        Command::Api(args) => api::run(args),
        Command::Device(args) => resources::run_device(args),
        Command::App(args) => resources::run_app(args),
        Command::Token(args) => tokens::run(args),
        Command::Up(args) => up::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasmbed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn client_options_go_before_or_after_the_subcommand() -> Result<(), clap::Error> {
        for args in [
            &["wasmbed", "device", "--output", "json", "list"][..],
            &[
                "wasmbed",
                "device",
                "list",
                "--output",
                "json",
                "--api",
                "http://h:1",
            ][..],
        ] {
            let cli = Cli::try_parse_from(args)?;
            assert!(matches!(cli.command, Command::Device(_)), "{args:?}");
        }
        assert!(Cli::try_parse_from(["wasmbed", "app", "deploy", "m.wasm"]).is_err());
        assert!(
            Cli::try_parse_from([
                "wasmbed", "app", "deploy", "m.wasm", "--name", "a", "--arg", "i8:1"
            ])
            .is_err()
        );
        Ok(())
    }
}
