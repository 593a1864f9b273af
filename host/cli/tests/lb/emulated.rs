//! QEMU devices running the real firmware for the load-balanced scenarios:
//! one `wasmbed emulator run` process (QEMU per device, each with its TCP
//! bridge) pointed at HAProxy, its consoles read from its output file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::Process;
use super::{WASMBED, wait_for};

/// The file in the test's directory the consoles are printed to.
pub(crate) const CONSOLES: &str = "emulator.out";

/// The firmware image, or why the QEMU scenario cannot run.
pub(crate) fn firmware() -> Result<PathBuf, String> {
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
    };
    if !on_path("qemu-system-arm") {
        return Err("qemu-system-arm is not installed (apt-get install qemu-system-arm)".into());
    }
    let firmware = std::env::var_os("WASMBED_FIRMWARE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../firmware/mps2/target/thumbv7m-none-eabi/release/wasmbed-mps2")
        });
    if !firmware.is_file() {
        return Err(format!(
            "no firmware at {} (cargo xtask firmware)",
            firmware.display()
        ));
    }
    Ok(firmware)
}

/// The running emulators and their consoles.
#[derive(Debug)]
pub(crate) struct Emulators {
    process: Process,
    /// Where `wasmbed emulator run` prints `[NAME] console line`.
    out: PathBuf,
    names: Vec<String>,
}

impl Emulators {
    /// Provisions and boots `devices` devices (qemu-0, qemu-1, ...) whose
    /// link goes to `127.0.0.1:gateway_port`, and waits until each has a
    /// session.
    pub(crate) fn start(
        dir: &Path,
        pki: &Path,
        firmware: &Path,
        devices: usize,
        gateway_port: u16,
        log: &Path,
    ) -> Emulators {
        let out = dir.join(CONSOLES);
        let mut command = Command::new(WASMBED);
        command
            .args(["emulator", "run", "--firmware"])
            .arg(firmware)
            .args(["--devices", &devices.to_string(), "--state-dir"])
            .arg(dir.join("qemu"))
            .arg("--pki")
            .arg(pki)
            .args(["--gateway", &format!("127.0.0.1:{gateway_port}")])
            .env("WASMBED_LOG", "info")
            .env("NO_COLOR", "1");
        let process = Process::spawn("wasmbed emulator run", &mut command, &out, log);
        let mut emulators = Emulators {
            process,
            out,
            names: (0..devices).map(|i| format!("qemu-{i}")).collect(),
        };
        wait_for(
            "every QEMU device enrolled and in session",
            Duration::from_secs(120),
            || {
                assert!(emulators.process.is_running(), "the emulators exited");
                let waiting: Vec<&String> = emulators
                    .names
                    .iter()
                    .filter(|n| emulators.count(n, "agent: session established") == 0)
                    .collect();
                if waiting.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{waiting:?} without a session"))
                }
            },
        );
        emulators
    }

    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// Device `name`'s console lines so far.
    pub(crate) fn console(&self, name: &str) -> Vec<String> {
        let prefix = format!("[{name}] ");
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    /// Console lines of `name` holding `text` (after the firmware's
    /// `[  seconds.ms]` stamp).
    pub(crate) fn count(&self, name: &str, text: &str) -> usize {
        self.console(name)
            .iter()
            .filter(|line| line.contains(text))
            .count()
    }

    /// Each device's id, from its last `session established as device ID`.
    pub(crate) fn device_ids(&self) -> BTreeMap<String, String> {
        self.names
            .iter()
            .map(|name| {
                let id = self
                    .console(name)
                    .iter()
                    .rev()
                    .find_map(|line| {
                        line.split_once("agent: session established as device ")
                            .and_then(|(_, rest)| rest.split_whitespace().next())
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| panic!("{name} has no session"));
                (name.clone(), id)
            })
            .collect()
    }
}
