//! `cargo xtask up`: builds what `wasmbed up` needs (the firmware, the
//! sample modules, the `wasmbed` command) and runs it: a gateway, the API
//! server and emulated devices running the sample application, until
//! Ctrl-C.

use std::path::Path;
use std::process::Command;

use anyhow::bail;

use crate::{apps, cmd, firmware, rustup, setup};

/// The emulator the devices run on.
const QEMU: &str = "qemu-system-arm";

/// Checks the prerequisites, builds, then runs `wasmbed up ARGS` with
/// the firmware and the primes module, its stdio inherited. On Unix the
/// xtask process becomes `wasmbed up`, so that Ctrl-C reaches it alone.
pub(crate) fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    rustup::ensure_target(&firmware::PROJECT.path(root), firmware::PROJECT.target)?;
    rustup::ensure_target(&apps::PRIMES.path(root), apps::PRIMES.target)?;
    if !cmd::on_path(QEMU) {
        bail!(
            "{QEMU} not found: install it with `{}`",
            setup::apt_install_line(&[setup::QEMU_PACKAGE])
        );
    }
    let elf = firmware::build(root)?;
    apps::build(root)?;
    cmd::run(cmd::cargo(root).args(["build", "-p", "wasmbed-cli"]))?;
    let wasmbed = cmd::target_dir(root)?.join("debug").join("wasmbed");
    anyhow::ensure!(
        wasmbed.is_file(),
        "wasmbed-cli built but {} does not exist",
        wasmbed.display()
    );
    let module = apps::out_dir(root)?.join("primes.wasm");
    let mut up = Command::new(&wasmbed);
    up.arg("up")
        .arg("--firmware")
        .arg(&elf)
        .arg("--app")
        .arg(&module)
        .args(args);
    println!(
        "xtask: $ {} up --firmware {} --app {} {}",
        cmd::show(root, &wasmbed),
        cmd::show(root, &elf),
        cmd::show(root, &module),
        args.join(" ")
    );
    #[cfg(unix)]
    {
        let error = std::os::unix::process::CommandExt::exec(&mut up);
        bail!("could not start {}: {error}", wasmbed.display());
    }
    #[cfg(not(unix))]
    {
        let status = up.status()?;
        anyhow::ensure!(status.success(), "wasmbed up failed ({status})");
        Ok(())
    }
}
