//! Wasmbed's task runner, run as `cargo xtask <command>`.
//!
//! `cargo xtask test` is the single entry point for CI (`.ci/run` calls it)
//! and runs the same checks locally.

// A task runner prints progress and results on stdout by design.
#![allow(clippy::print_stdout)]

mod apps;
mod bench_api;
mod bench_firmware;
mod bench_gateway;
mod bench_zephyr;
mod cmd;
mod cross;
mod ffi_header;
mod firmware;
mod fuzz;
mod kubernetes;
mod robot;
mod rustup;
mod schemathesis;
mod setup;
mod size;
mod test;
mod up;
mod venv;
mod zephyr;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::builder::FalseyValueParser;
use clap::{Parser, Subcommand, ValueEnum};

/// Wasmbed's task runner: the checks CI runs, firmware and application
/// builds, size reports, the Robot tests, formatting, fuzzing, benchmarks.
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
    ///   setup             as `cargo xtask setup`: the Rust targets and components,
    ///                     cargo-nextest, cargo-fuzz and the Python tools, installed
    ///                     when missing; stops when Debian packages are missing,
    ///                     naming the `sudo apt-get install` command
    ///   fmt               cargo fmt --all -- --check
    ///   clippy            cargo clippy --workspace --all-targets --all-features -- -D warnings
    ///   firmware fmt      in firmware/mps2: cargo fmt --check
    ///   firmware clippy   in firmware/mps2: cargo clippy --release -- -D warnings
    ///   firmware build    in firmware/mps2: cargo build --release (as `cargo xtask firmware`)
    ///   apps fmt          in apps/primes: cargo fmt --check
    ///   apps clippy       in apps/primes: cargo clippy --release -- -D warnings
    ///   apps build        target/apps/*.wasm (as `cargo xtask apps`)
    ///   size              the firmware's flash and RAM budget (as `cargo xtask size`)
    ///                     (the seven steps from `firmware fmt` are skipped with
    ///                     --skip-firmware: the tests that boot the firmware on QEMU
    ///                     then use what was built before)
    ///   nextest           cargo nextest run --workspace --all-features
    ///                     (with WASMBED_REQUIRE_BROWSER: the Chromium tests must run)
    ///   schemathesis      the API server and a gateway fuzzed against their OpenAPI
    ///                     documents (as `cargo xtask schemathesis`)
    ///   k8s-validate      deploy/kubernetes against the Kubernetes schemas and the
    ///                     examples against the CRDs (as `cargo xtask k8s-validate`)
    ///   robot             the Robot Framework suite in tests/robot on QEMU (as `cargo xtask robot`;
    ///                     skipped with --skip-firmware)
    ///   doctest           cargo test --workspace --doc --all-features
    ///   no_std            cargo build -p wasmbed-protocol --no-default-features --target T
    ///                     for T in thumbv7m-none-eabi, thumbv7em-none-eabihf
    ///   no_std agent      cargo build -p wasmbed-agent --no-default-features --features wasmi
    ///                     --target thumbv7m-none-eabi
    ///   ffi               cargo build -p P --target thumbv7m-none-eabi --release for P in
    ///                     wasmbed-protocol-ffi, wasmbed-agent-ffi (the C ABIs)
    ///   zephyr            where a west workspace exists (ZEPHYR_BASE, or zephyr-workspace/):
    ///                     the Zephyr image (as `cargo xtask zephyr`), then the firmware tests
    ///                     (host/emulator/tests/firmware) and the Robot suite against it;
    ///                     a named skip where none exists
    ///   fuzz              cargo fuzz run TARGET -- -max_total_time=SECS, for every target
    ///                     of `cargo fuzz list` (skipped while fuzz/ does not exist)
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
        /// Skip the firmware and application builds, the size check and the
        /// Robot tests, for quick local runs (and on a machine without QEMU).
        #[arg(long, env = test::SKIP_FIRMWARE_ENV, value_parser = FalseyValueParser::new())]
        skip_firmware: bool,
    },
    /// Install what `cargo xtask test` needs, as far as it can without root.
    ///
    /// Adds the Rust targets (thumbv7m-none-eabi, thumbv7em-none-eabihf,
    /// wasm32-unknown-unknown) and components (rustfmt, clippy) with rustup;
    /// installs cargo-nextest and cargo-fuzz with `cargo install --locked`;
    /// makes a Python virtual environment (target/venv, or $WASMBED_VENV)
    /// with `python3 -m venv` and installs the pinned tools of
    /// tests/requirements.txt into it (Robot Framework, Schemathesis,
    /// kubernetes-validate). Only
    /// what is missing is installed. Debian packages (gcc, g++,
    /// qemu-system-arm, chromium, haproxy, python3-venv) need root: setup
    /// checks them, and when some are missing it fails, after everything
    /// else, with the `sudo apt-get install -y ...` command that installs
    /// them.
    #[command(about = "Install what `cargo xtask test` needs, as far as it can without root")]
    Setup {
        /// Only print the names of the missing Debian packages, on one
        /// line (empty when none), and install nothing: `.ci/run` installs
        /// them as root.
        #[arg(long)]
        print_debian_packages: bool,
        /// Leave out what only the firmware steps need (qemu-system-arm),
        /// as `cargo xtask test --skip-firmware` does.
        #[arg(long, env = test::SKIP_FIRMWARE_ENV, value_parser = FalseyValueParser::new())]
        skip_firmware: bool,
    },
    /// Build the bare-metal firmware for QEMU's mps2-an385 and print its path.
    ///
    /// Runs `cargo build --release` in firmware/mps2 (a workspace of its own,
    /// for thumbv7m-none-eabi), after adding that Rust target with rustup if
    /// it is missing, and prints the path of the ELF image, which QEMU boots
    /// with `-kernel` and the tests against real firmware read.
    #[command(about = "Build the bare-metal firmware for QEMU's mps2-an385 and print its path")]
    Firmware {
        /// Also check the firmware: `cargo fmt --check` and
        /// `cargo clippy --release -- -D warnings`, before building.
        #[arg(long)]
        check: bool,
    },
    /// Build the sample WebAssembly applications into target/apps.
    ///
    /// Runs `cargo build --release` in apps/primes (a workspace of its own,
    /// for wasm32-unknown-unknown), after adding that Rust target with rustup
    /// if it is missing, and copies the module to target/apps/primes.wasm;
    /// compiles every apps/wat/NAME.wat to target/apps/NAME.wasm. Prints each
    /// module with its size.
    #[command(about = "Build the sample WebAssembly applications into target/apps")]
    Apps {
        /// Also check apps/primes: `cargo fmt --check` and
        /// `cargo clippy --release -- -D warnings`, before building.
        #[arg(long)]
        check: bool,
    },
    /// Show what the firmware takes of its flash and RAM budget.
    ///
    /// Reads the firmware ELF and prints its allocated sections; FLASH used
    /// (.vector_table, .text, .rodata and .data's load image) against the
    /// 768 KiB budget; RAM used (.data, .bss, .uninit) against the 128 KiB
    /// budget, split into the heap (heap::init::MEMORY) and other statics,
    /// and the stack left above them (_stack_start - __sheap); the largest
    /// symbols in .text and .rodata; and the flash each crate takes.
    /// Exits non-zero when FLASH or RAM is over budget.
    #[command(about = "Show what the firmware takes of its flash and RAM budget")]
    Size {
        /// The ELF to read [default: the release firmware, built first if missing].
        #[arg(long, value_name = "PATH")]
        elf: Option<PathBuf>,
        /// Instead, the Zephyr image's flash and RAM by part (kernel,
        /// network, mbedTLS, WAMR, agent...), from the linker map of the
        /// last `cargo xtask zephyr` build.
        #[arg(long, conflicts_with = "elf")]
        zephyr: bool,
    },
    /// Run the Robot Framework suite in tests/robot.
    ///
    /// Builds `wasmbed-cli`, and the firmware and target/apps/*.wasm when
    /// they are missing; installs Robot Framework into the project's Python
    /// environment when missing (as `cargo xtask setup` does); then runs
    /// `target/venv/bin/python -m robot --outputdir target/robot --variable
    /// BACKEND:<BACKEND> tests/robot`, which boots
    /// the firmware against a gateway through the `wasmbed` command. Fails
    /// when a test fails; the report is target/robot/log.html.
    #[command(about = "Run the Robot Framework suite in tests/robot")]
    Robot {
        /// The emulator the devices run on (the Robot variable BACKEND).
        #[arg(long, value_enum, default_value_t = robot::Backend::Qemu)]
        backend: robot::Backend,
        /// Against the Zephyr + WAMR image (built as `cargo xtask zephyr`
        /// does, on the board mps2-an385-zephyr) instead of the bare-metal
        /// firmware.
        #[arg(long)]
        zephyr: bool,
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
    /// Regenerate the C headers (protocol/ffi/include/wasmbed_protocol.h,
    /// firmware/agent-ffi/include/wasmbed_agent.h) with cbindgen.
    FfiHeader,
    /// Build the Zephyr + WAMR application for mps2/an385 in a west workspace.
    ///
    /// Finds the workspace through ZEPHYR_BASE (its parent) or at
    /// zephyr-workspace/ in the repository, and runs `west build -b
    /// mps2/an385 -d zephyr-workspace/build/mps2_an385 zephyr-app` there
    /// (ZEPHYR_TOOLCHAIN_VARIANT=gnuarmemb with GNUARMEMB_TOOLCHAIN_PATH=/usr
    /// unless set). The app's CMake builds the agent's static library with
    /// cargo. Without a workspace it prints how to create one (west init,
    /// west update from this repository's west.yml) and exits 0, reporting
    /// the skip.
    #[command(about = "Build the Zephyr + WAMR application in a west workspace")]
    Zephyr,
    /// Build everything and run a local installation with `wasmbed up`.
    ///
    /// Adds the firmware's and the applications' Rust targets with rustup
    /// when missing, checks that qemu-system-arm is installed (`sudo
    /// apt-get install qemu-system-arm`), builds the firmware, the sample
    /// applications and `wasmbed-cli`, then runs `wasmbed up --firmware ELF
    /// --app target/apps/primes.wasm [ARGS]`: a gateway, the API server on
    /// 127.0.0.1:8080 and emulated devices running the primes module, until
    /// Ctrl-C. `wasmbed up --help` lists the ARGS.
    #[command(about = "Build everything and run a local installation with `wasmbed up`")]
    Up {
        /// Arguments for `wasmbed up`, e.g. `--devices 5`.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<String>,
    },
    /// Fuzz the API server and a gateway against their OpenAPI documents
    /// with Schemathesis.
    ///
    /// Builds and starts the API server (`host/api/examples/serve.rs`, a
    /// fresh SQLite database on a free loopback port), then runs
    /// `schemathesis run URL/openapi.json --header "Authorization: Bearer
    /// TOKEN" --checks all --max-examples N`; then the real `wasmbed
    /// gateway` of a new installation, called over mutual TLS with the API
    /// server's control certificate (`--tls-verify gateway-ca.pem
    /// --request-cert api-client.pem`). Leaves out the checks that only
    /// report documentation gaps unless --all-checks; Schemathesis comes from
    /// the project's Python environment (installed when missing, as `cargo
    /// xtask setup` does). Fails on any failed check.
    #[command(
        about = "Fuzz the API server and a gateway against their OpenAPI documents with Schemathesis"
    )]
    Schemathesis {
        /// Test cases per API operation and phase.
        #[arg(long, value_name = "N", default_value_t = schemathesis::DEFAULT_MAX_EXAMPLES)]
        max_examples: u32,
        /// Also run status_code_conformance and positive_data_acceptance.
        #[arg(long)]
        all_checks: bool,
    },
    /// Write the CustomResourceDefinitions of Device, Application and
    /// Gateway into deploy/kubernetes/crds.
    ///
    /// Runs `wasmbed-crds` (host/k8s), which derives them from the API
    /// server's spec and status types. host/k8s's test
    /// `checked_in_crds_are_up_to_date` fails while the files there differ.
    #[command(
        about = "Write the CRDs of Device, Application and Gateway into deploy/kubernetes/crds"
    )]
    Crds {
        /// Write nothing; fail when a checked-in CRD is stale.
        #[arg(long)]
        check: bool,
    },
    /// Validate deploy/kubernetes offline.
    ///
    /// Fails when the CRDs are stale (`cargo xtask crds --check`); then runs
    /// tests/kubernetes/validate.py in the project's Python environment:
    /// every manifest against the schemas of the Kubernetes version of
    /// k8s-openapi's feature (kubernetes-validate, strict), kustomization.yaml
    /// listing exactly the manifests, and every custom resource in
    /// deploy/kubernetes/examples against its CRD's openAPIV3Schema
    /// (jsonschema, refusing unknown fields as `kubectl apply` does).
    #[command(about = "Validate deploy/kubernetes against the Kubernetes schemas and the CRDs")]
    K8sValidate,
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
    /// The firmware in QEMU: builds it, prints its flash and RAM, then
    /// runs `wasmbed-bench firmware [ARGS]` (boot to enrolled, the TLS
    /// handshake in wall time and guest instructions, a 16 KiB deployment).
    Firmware,
    /// The Zephyr + WAMR image beside the bare-metal firmware on the same
    /// board: builds both and the sample applications, prints flash and
    /// RAM (the Zephyr image by part, from its linker map), then runs
    /// `wasmbed-bench zephyr [ARGS]` (boot to enrolled, TLS handshakes and
    /// primes in guest instructions under -icount). Needs a west workspace
    /// (see `cargo xtask zephyr`).
    Zephyr,
    /// The API server over a real socket with a SQLite store: builds
    /// `wasmbed-bench` in release mode, then runs `wasmbed-bench api
    /// [ARGS]` (device listing against /healthz, deployment through the
    /// controller to simulated devices).
    Api,
    /// Sessions per box: builds `wasmbed-cli` and `wasmbed-bench` in
    /// release mode, then runs `wasmbed-bench scale [ARGS]` (one gateway
    /// holding 1,000 then 10,000 heartbeating sessions for 10 minutes
    /// each by default; `-- --sessions 100000` for the largest).
    Scale,
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
        Command::Test {
            fuzz_seconds,
            skip_firmware,
        } => test::run(root, fuzz_seconds, skip_firmware),
        Command::Setup {
            print_debian_packages,
            skip_firmware,
        } => setup::run(root, skip_firmware, print_debian_packages),
        Command::Firmware { check } => firmware::run(root, check),
        Command::Apps { check } => apps::run(root, check),
        Command::Size { zephyr: true, .. } => {
            bench_zephyr::print_zephyr_size(&zephyr::elf_path(root).with_file_name("zephyr.map"))
        }
        Command::Size { elf, .. } => size::run(root, elf.as_deref()),
        Command::Robot {
            backend,
            zephyr: false,
        } => robot::run(root, backend),
        Command::Robot {
            backend,
            zephyr: true,
        } => match zephyr::run(root)? {
            zephyr::Outcome::Built(elf) => robot::run_with(
                root,
                backend,
                Some(robot::Image {
                    elf: &elf,
                    board: zephyr::QEMU_BOARD,
                }),
            ),
            zephyr::Outcome::Skipped(why) => anyhow::bail!("no Zephyr image: {why}"),
        },
        Command::Fmt => Ok(cmd::run(cmd::cargo(root).args(["fmt", "--all"]))?),
        Command::Fuzz { seconds, targets } => fuzz::run(root, seconds, &targets),
        Command::FfiHeader => ffi_header::run(root),
        Command::Zephyr => match zephyr::run(root)? {
            zephyr::Outcome::Built(_) => Ok(()),
            zephyr::Outcome::Skipped(why) => {
                println!("xtask: zephyr: skipped: {why}");
                Ok(())
            }
        },
        Command::Up { args } => up::run(root, &args),
        Command::Schemathesis {
            max_examples,
            all_checks,
        } => schemathesis::run(root, max_examples, all_checks),
        Command::Crds { check } => kubernetes::crds(root, check),
        Command::K8sValidate => kubernetes::validate(root),
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
        Command::Bench {
            suite: BenchSuite::Firmware,
            args,
        } => bench_firmware::run(root, &args),
        Command::Bench {
            suite: BenchSuite::Zephyr,
            args,
        } => bench_zephyr::run(root, &args),
        Command::Bench {
            suite: BenchSuite::Api,
            args,
        } => bench_api::run(root, &args),
        Command::Bench {
            suite: BenchSuite::Scale,
            args,
        } => bench_gateway::run_suite(root, "scale", &args),
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
    fn test_takes_fuzz_seconds_and_skip_firmware() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from(["xtask", "test", "--fuzz-seconds", "2", "--skip-firmware"])?;
        let Command::Test {
            fuzz_seconds,
            skip_firmware,
        } = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(fuzz_seconds, 2);
        assert!(skip_firmware);
        Ok(())
    }

    #[test]
    fn skip_firmware_is_also_an_environment_variable() {
        let command = Cli::command();
        let test = command.find_subcommand("test").expect("a test subcommand");
        let skip = test
            .get_arguments()
            .find(|arg| arg.get_id() == "skip_firmware")
            .expect("a --skip-firmware flag");
        assert_eq!(
            skip.get_env(),
            Some(std::ffi::OsStr::new(test::SKIP_FIRMWARE_ENV))
        );
    }

    #[test]
    fn setup_can_only_print_the_debian_packages() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from(["xtask", "setup"])?;
        assert!(matches!(
            cli.command,
            Command::Setup {
                print_debian_packages: false,
                ..
            }
        ));
        let cli = Cli::try_parse_from([
            "xtask",
            "setup",
            "--print-debian-packages",
            "--skip-firmware",
        ])?;
        assert!(matches!(
            cli.command,
            Command::Setup {
                print_debian_packages: true,
                skip_firmware: true
            }
        ));
        Ok(())
    }

    #[test]
    fn firmware_and_apps_take_check() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from(["xtask", "firmware"])?;
        assert!(matches!(cli.command, Command::Firmware { check: false }));
        let cli = Cli::try_parse_from(["xtask", "firmware", "--check"])?;
        assert!(matches!(cli.command, Command::Firmware { check: true }));
        let cli = Cli::try_parse_from(["xtask", "apps", "--check"])?;
        assert!(matches!(cli.command, Command::Apps { check: true }));
        assert!(Cli::try_parse_from(["xtask", "apps", "primes"]).is_err());
        Ok(())
    }

    #[test]
    fn size_takes_an_optional_elf() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from(["xtask", "size"])?;
        assert!(matches!(
            cli.command,
            Command::Size {
                elf: None,
                zephyr: false
            }
        ));
        let cli = Cli::try_parse_from(["xtask", "size", "--elf", "fw.elf"])?;
        let Command::Size { elf: Some(elf), .. } = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(elf, Path::new("fw.elf"));
        assert!(Cli::try_parse_from(["xtask", "size", "--elf"]).is_err());
        Ok(())
    }

    #[test]
    fn robot_takes_a_backend() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from(["xtask", "robot"])?;
        assert!(matches!(
            cli.command,
            Command::Robot {
                backend: robot::Backend::Qemu,
                zephyr: false
            }
        ));
        let cli = Cli::try_parse_from(["xtask", "robot", "--zephyr"])?;
        assert!(matches!(cli.command, Command::Robot { zephyr: true, .. }));
        let cli = Cli::try_parse_from(["xtask", "robot", "--backend", "renode"])?;
        assert!(matches!(
            cli.command,
            Command::Robot {
                backend: robot::Backend::Renode,
                ..
            }
        ));
        assert!(Cli::try_parse_from(["xtask", "robot", "--backend", "bochs"]).is_err());
        assert!(Cli::try_parse_from(["xtask", "robot", "--backend"]).is_err());
        Ok(())
    }

    #[test]
    fn crds_may_only_check() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from(["xtask", "crds"])?;
        assert!(matches!(cli.command, Command::Crds { check: false }));
        let cli = Cli::try_parse_from(["xtask", "crds", "--check"])?;
        assert!(matches!(cli.command, Command::Crds { check: true }));
        let cli = Cli::try_parse_from(["xtask", "k8s-validate"])?;
        assert!(matches!(cli.command, Command::K8sValidate));
        Ok(())
    }

    #[test]
    fn every_subcommand_explains_itself() {
        for sub in Cli::command().get_subcommands() {
            assert!(
                sub.get_about().is_some(),
                "`{}` has no help text",
                sub.get_name()
            );
        }
    }

    #[test]
    fn up_passes_its_arguments_on() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from(["xtask", "up"])?;
        assert!(matches!(cli.command, Command::Up { ref args } if args.is_empty()));
        let cli = Cli::try_parse_from(["xtask", "up", "--devices", "5", "--dir", "d"])?;
        let Command::Up { args } = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(args, ["--devices", "5", "--dir", "d"]);
        Ok(())
    }

    #[test]
    fn bench_needs_a_known_suite() {
        assert!(Cli::try_parse_from(["xtask", "bench", "protocol"]).is_ok());
        assert!(Cli::try_parse_from(["xtask", "bench", "gateway"]).is_ok());
        assert!(Cli::try_parse_from(["xtask", "bench", "api"]).is_ok());
        assert!(Cli::try_parse_from(["xtask", "schemathesis", "--max-examples", "5"]).is_ok());
        assert!(Cli::try_parse_from(["xtask", "bench", "nonsense"]).is_err());
    }

    #[test]
    fn root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("xtask").is_dir());
    }
}
