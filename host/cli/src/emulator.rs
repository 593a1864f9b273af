//! `wasmbed emulator`: run firmware on emulated boards as devices of an
//! installation.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use tokio::sync::mpsc;
use wasmbed_emulator::console::ConsoleMark;
use wasmbed_emulator::{
    Backend, Board, ClaimMaterial, DeviceHandle, DeviceSpec, DeviceState, EmulatorManager,
    ProvisionOptions, Provisioned, provision, reset_storage,
};

#[derive(Debug, Subcommand)]
pub(crate) enum EmulatorCommand {
    /// Provision and run emulated devices, printing their consoles.
    Run(RunArgs),
    /// Factory-reset a device: delete its flash (enrolled identity and
    /// modules), keep its provisioning record. Stop the device first.
    ResetStorage {
        /// The directory holding the devices' state directories.
        #[arg(long, default_value = "wasmbed-devices")]
        state_dir: PathBuf,
        /// The device, e.g. qemu-0.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Args)]
#[command(after_long_help = "\
Each device gets a state directory DIR/NAME/ (NAME is the prefix and an \
index: qemu-0, qemu-1, …). A device without one is provisioned first: its \
provision.bin carries the installation's gateway CA and claim certificate \
and key, the server name and a random entropy seed. The firmware keeps its \
enrolled identity and modules in flash.bin there, so a device that has \
enrolled once comes back as itself on the next run; `wasmbed emulator \
reset-storage` forgets it.

Every device runs in its own emulator with a TCP bridge from its link UART \
to --gateway (see `wasmbed bridge --help`).

Output, one line each, flushed at once:
  # started qemu-0 pid=1234 link=127.0.0.1:40113 state=wasmbed-devices/qemu-0
  [qemu-0] <a line of the device's console>
  # qemu-0 exited with code 1        (then the emulator's stderr, and exit status 1)
Logs go to stderr.

Ctrl-C stops every device (SIGTERM, SIGKILL after 5 s) and exits 0. A \
device that exits or crashes on its own stops the others and exits 1.

Example, against a local gateway:
  wasmbed certs init --dir wasmbed-pki
  wasmbed gateway --pki wasmbed-pki --open-pairing &
  wasmbed emulator run --firmware firmware/mps2/target/thumbv7m-none-eabi/release/wasmbed-mps2 --devices 3

The Zephyr + WAMR image runs on the board with Ethernet (QEMU user-mode \
networking; the gateway's address goes into provision.bin):
  wasmbed emulator run --board mps2-an385-zephyr \
    --firmware zephyr-workspace/build/mps2_an385/zephyr/zephyr.elf")]
pub(crate) struct RunArgs {
    /// The firmware image (ELF) every device runs.
    #[arg(long)]
    firmware: PathBuf,
    /// The board, a file boards/NAME.toml.
    #[arg(long, default_value = "mps2-an385")]
    board: String,
    /// Directory of board descriptions (default: the repository's boards/).
    #[arg(long, env = "WASMBED_BOARDS")]
    boards: Option<PathBuf>,
    /// Number of devices.
    #[arg(long, short = 'n', default_value_t = 1)]
    devices: usize,
    /// Directory holding one state directory per device.
    #[arg(long, default_value = "wasmbed-devices")]
    state_dir: PathBuf,
    /// Installation directory made by `wasmbed certs init` (the one the
    /// gateway uses), for provisioning new devices.
    #[arg(
        long,
        alias = "pki",
        default_value = "wasmbed-pki",
        env = "WASMBED_PKI"
    )]
    certs: PathBuf,
    /// The gateway's device address (TLS port), HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:40029")]
    gateway: String,
    /// Name the gateway's certificate must carry (provisioned into new
    /// devices).
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// The emulator.
    #[arg(long, default_value = "qemu", value_parser = parse_backend)]
    backend: Backend,
    /// QEMU -icount shift: instructions run at 2^N ns each, repeatably.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=10))]
    icount: Option<u8>,
    /// Device name prefix (default: the backend's name and a dash).
    #[arg(long)]
    name_prefix: Option<String>,
    /// Write a new provision.bin even for devices that have one (their
    /// flash is kept).
    #[arg(long)]
    reprovision: bool,
}

fn parse_backend(text: &str) -> Result<Backend, String> {
    text.parse()
        .map_err(|e: wasmbed_emulator::backend::UnknownBackend| e.to_string())
}

pub(crate) fn run(command: EmulatorCommand) -> anyhow::Result<()> {
    match command {
        EmulatorCommand::Run(args) => run_devices(args),
        EmulatorCommand::ResetStorage { state_dir, name } => {
            let dir = state_dir.join(&name);
            if !dir.is_dir() {
                bail!("no device {name} in {}", state_dir.display());
            }
            if reset_storage(&dir)? {
                println!("{name}: deleted its flash; it enrolls anew at its next start");
            } else {
                println!("{name}: no flash in {}: nothing to reset", dir.display());
            }
            Ok(())
        }
    }
}

/// Prints one line and flushes: a test harness reads these as they come.
fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

fn run_devices(args: RunArgs) -> anyhow::Result<()> {
    if args.devices == 0 {
        bail!("--devices must be at least 1");
    }
    let board = match &args.boards {
        Some(dir) => Board::find_in(dir, &args.board),
        None => Board::find(&args.board),
    }?;
    let implementation = args.backend.implementation();
    if !implementation.available() {
        bail!(
            "{} not found: {}",
            implementation.program().to_string_lossy(),
            implementation.install_hint()
        );
    }
    if !args.firmware.is_file() {
        bail!(
            "firmware {} not found (build it first, e.g. the mps2 firmware under firmware/mps2)",
            args.firmware.display()
        );
    }
    let prefix = args
        .name_prefix
        .clone()
        .unwrap_or_else(|| format!("{}-", args.backend));
    let names: Vec<String> = (0..args.devices).map(|i| format!("{prefix}{i}")).collect();
    provision_devices(&args, &names)?;
    let specs: Vec<DeviceSpec> = names
        .iter()
        .map(|name| DeviceSpec {
            name: name.clone(),
            board: board.clone(),
            firmware: args.firmware.clone(),
            state_dir: args.state_dir.join(name),
            gateway: args.gateway.clone(),
            backend: args.backend,
            icount: args.icount,
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(supervise(specs))
}

fn provision_devices(args: &RunArgs, names: &[String]) -> anyhow::Result<()> {
    let mut claim: Option<ClaimMaterial> = None;
    for name in names {
        let dir = args.state_dir.join(name);
        if !args.reprovision
            && dir
                .join(wasmbed_emulator::provision::PROVISION_FILE)
                .exists()
        {
            continue;
        }
        let material = match &claim {
            Some(material) => material.clone(),
            None => {
                let loaded = ClaimMaterial::load(&args.certs).with_context(|| {
                    format!(
                        "provisioning {name} (create an installation with `wasmbed certs init --dir {}`)",
                        args.certs.display()
                    )
                })?;
                claim = Some(loaded.clone());
                loaded
            }
        };
        let options = ProvisionOptions {
            claim: material,
            server_name: args.server_name.clone(),
            device_name: name.clone(),
            overwrite: args.reprovision,
        };
        if provision(&dir, &options)? == Provisioned::Written {
            say(&format!("# provisioned {name} in {}", dir.display()));
        }
    }
    Ok(())
}

async fn supervise(specs: Vec<DeviceSpec>) -> anyhow::Result<()> {
    let manager = EmulatorManager::new();
    let (lines, mut line_receiver) = mpsc::unbounded_channel::<(String, String)>();
    let (failures, mut failure_receiver) = mpsc::unbounded_channel::<(String, DeviceState)>();
    let mut devices: Vec<DeviceHandle> = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for spec in specs {
        let state_dir = spec.state_dir.clone();
        let device = match manager.start(spec).await {
            Ok(device) => device,
            Err(e) => {
                manager.stop_all().await;
                return Err(e.into());
            }
        };
        let link = match device.link_port() {
            Some(port) => format!("127.0.0.1:{port}"),
            None => "network".to_owned(),
        };
        say(&format!(
            "# started {} pid={} link={link} state={}",
            device.name(),
            device.pid().unwrap_or(0),
            state_dir.display()
        ));
        let mut follower = device.console().follow(ConsoleMark::START);
        let name = device.name().to_owned();
        let sender = lines.clone();
        tasks.spawn(async move {
            loop {
                let line = follower.next().await;
                if sender.send((name.clone(), line.text)).is_err() {
                    return;
                }
            }
        });
        let mut state = device.watch_state();
        let name = device.name().to_owned();
        let sender = failures.clone();
        tasks.spawn(async move {
            if let Ok(state) = state.wait_for(DeviceState::is_failure).await {
                let _ = sender.send((name, state.clone()));
            }
        });
        devices.push(device);
    }

    let mut printed: HashMap<String, usize> = HashMap::new();
    let print = |printed: &mut HashMap<String, usize>, name: &str, text: &str| {
        *printed.entry(name.to_owned()).or_default() += 1;
        say(&format!("[{name}] {text}"));
    };
    let outcome = loop {
        tokio::select! {
            Some((name, text)) = line_receiver.recv() => print(&mut printed, &name, &text),
            Some((name, state)) = failure_receiver.recv() => break Err((name, state)),
            signal = tokio::signal::ctrl_c() => {
                signal.context("waiting for Ctrl-C")?;
                break Ok(());
            }
        }
    };
    say("# stopping all devices");
    manager.stop_all().await;
    tasks.abort_all();
    // Every line is in the consoles now; print what the followers had not
    // passed on yet, in order.
    while let Ok((name, text)) = line_receiver.try_recv() {
        print(&mut printed, &name, &text);
    }
    for device in &devices {
        let seen = printed.get(device.name()).copied().unwrap_or(0);
        for line in device.console().lines_after(ConsoleMark(seen)) {
            say(&format!("[{}] {}", device.name(), line.text));
        }
    }
    for device in &devices {
        say(&format!("# {} {}", device.name(), device.state()));
    }
    match outcome {
        Ok(()) => Ok(()),
        Err((name, state)) => {
            let stderr = devices
                .iter()
                .find(|d| d.name() == name)
                .map(DeviceHandle::stderr_tail)
                .unwrap_or_default();
            let mut message = format!("{name} {state}");
            if !stderr.is_empty() {
                message.push_str("; emulator stderr:");
                for line in stderr {
                    message.push_str("\n  ");
                    message.push_str(&line);
                }
            }
            bail!(message)
        }
    }
}
