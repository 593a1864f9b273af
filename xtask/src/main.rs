//! Wasmbed's task runner, run as `cargo xtask <command>`.
//!
//! `cargo xtask test` is the single entry point for CI (`.ci/run` calls it)
//! and runs the same checks locally.

// A task runner prints progress and results on stdout by design.
#![allow(clippy::print_stdout)]

mod bench_gateway;
mod cmd;
mod ffi_header;
mod fuzz;
mod test;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Wasmbed's task runner: the checks CI runs, formatting, fuzzing, benchmarks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything CI runs, stopping at the first failing step.
    ///
    /// Steps, in order:
    ///   fmt           cargo fmt --all -- --check
    ///   clippy        cargo clippy --workspace --all-targets --all-features -- -D warnings
    ///   nextest       cargo nextest run --workspace --all-features
    ///                 (or `test`: cargo test --workspace --all-features, without cargo-nextest)
    ///   doctest       cargo test --workspace --doc --all-features
    ///   no_std        cargo build -p wasmbed-protocol --no-default-features --target T
    ///                 for T in thumbv7m-none-eabi, thumbv7em-none-eabihf
    ///   ffi           cargo build -p wasmbed-protocol-ffi --target thumbv7m-none-eabi --release
    ///                 (skipped while the package is not in the workspace)
    ///   fuzz          cargo fuzz run TARGET -- -max_total_time=SECS, for every target
    ///                 of `cargo fuzz list` (skipped while fuzz/ does not exist)
    ///
    /// Prints each step's time, and ends with `xtask: N passed, 0 failed`
    /// when every step passed; exits non-zero otherwise.
    #[command(
        verbatim_doc_comment,
        about = "Run everything CI runs, stopping at the first failing step"
    )]
    Test {
        /// Seconds each fuzz target runs.
        #[arg(long, value_name = "SECS", env = fuzz::SECONDS_ENV, default_value_t = fuzz::DEFAULT_SECONDS)]
        fuzz_seconds: u64,
    },
    /// Format the whole workspace in place (cargo fmt --all).
    Fmt,
    /// Fuzz the decoders with cargo-fuzz for a short, fixed time.
    ///
    /// Uses `cargo +nightly fuzz` when rustup has a nightly toolchain, else
    /// the stable compiler with RUSTC_BOOTSTRAP=1.
    Fuzz {
        /// Seconds each target runs.
        #[arg(long, value_name = "SECS", env = fuzz::SECONDS_ENV, default_value_t = fuzz::DEFAULT_SECONDS)]
        seconds: u64,
        /// Targets to run, as `cargo fuzz list` names them; all when none given.
        #[arg(value_name = "TARGET")]
        targets: Vec<String>,
    },
    /// Regenerate protocol/ffi/include/wasmbed_protocol.h with cbindgen.
    FfiHeader,
    /// Run a crate's benchmarks.
    Bench {
        /// Which benchmarks to run.
        #[arg(value_enum)]
        suite: BenchSuite,
        /// Extra arguments for the benchmark harness, after `--`.
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BenchSuite {
    /// The protocol codec: `cargo bench -p wasmbed-protocol --bench codec`.
    Protocol,
    /// The gateway over real TLS, against a bare TLS baseline: builds
    /// `wasmbed-cli` and `wasmbed-bench` in release mode, then runs
    /// `wasmbed-bench gateway [ARGS]` (see `wasmbed-bench gateway --help`).
    Gateway,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command, &workspace_root()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, root: &Path) -> anyhow::Result<()> {
    match command {
        Command::Test { fuzz_seconds } => test::run(root, fuzz_seconds),
        Command::Fmt => Ok(cmd::run(cmd::cargo(root).args(["fmt", "--all"]))?),
        Command::Fuzz { seconds, targets } => fuzz::run(root, seconds, &targets),
        Command::FfiHeader => ffi_header::run(root),
        Command::Bench {
            suite: BenchSuite::Protocol,
            args,
        } => {
            let mut bench = cmd::cargo(root);
            bench.args(["bench", "-p", "wasmbed-protocol", "--bench", "codec"]);
            if !args.is_empty() {
                bench.arg("--").args(args);
            }
            Ok(cmd::run(&mut bench)?)
        }
        Command::Bench {
            suite: BenchSuite::Gateway,
            args,
        } => bench_gateway::run(root, &args),
    }
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_dir.parent().unwrap_or(xtask_dir).to_path_buf()
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
    fn fuzz_takes_seconds_and_targets() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from(["xtask", "fuzz", "--seconds", "3", "frame", "message"])?;
        let Command::Fuzz { seconds, targets } = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(seconds, 3);
        assert_eq!(targets, ["frame", "message"]);
        Ok(())
    }

    #[test]
    fn bench_needs_a_known_suite() {
        assert!(Cli::try_parse_from(["xtask", "bench", "protocol"]).is_ok());
        assert!(Cli::try_parse_from(["xtask", "bench", "gateway"]).is_ok());
        assert!(Cli::try_parse_from(["xtask", "bench", "nonsense"]).is_err());
    }

    #[test]
    fn root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("xtask").is_dir());
    }
}
