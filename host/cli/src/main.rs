//! `wasmbed`: the operator's command for a Wasmbed installation.
#![allow(clippy::print_stdout)] // a command-line tool prints by design

mod bridge;
mod certs;
mod emulator;
mod gateway;
mod logging;
mod sim;

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
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasmbed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
