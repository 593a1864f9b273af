//! `cargo xtask test`: every check CI runs, in order, stopping at the first
//! failure, after `cargo xtask setup` has installed what they need.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::{apps, cmd, firmware, fuzz, kubernetes, robot, schemathesis, setup, size};

/// The environment variable that skips the firmware and application
/// builds, the size check and the Robot tests, like `--skip-firmware`.
pub(crate) const SKIP_FIRMWARE_ENV: &str = "WASMBED_SKIP_FIRMWARE";

/// The C-ABI crate for the Zephyr/WAMR application; built when it exists.
/// The C-ABI static libraries the Zephyr application links.
const FFI_PACKAGES: [&str; 2] = ["wasmbed-protocol-ffi", "wasmbed-agent-ffi"];

/// The no_std targets the protocol crate must keep building for.
pub(crate) const NO_STD_TARGETS: [&str; 2] = ["thumbv7m-none-eabi", "thumbv7em-none-eabihf"];

/// A step that needs only the repository root.
type Step = fn(&Path) -> anyhow::Result<()>;

/// The firmware and application steps, skipped by `--skip-firmware`.
const FIRMWARE_STEPS: [(&str, Step); 7] = [
    ("firmware fmt", |root| firmware::PROJECT.fmt_check(root)),
    ("firmware clippy", |root| firmware::PROJECT.clippy(root)),
    ("firmware build", |root| firmware::build(root).map(drop)),
    ("apps fmt", |root| apps::PRIMES.fmt_check(root)),
    ("apps clippy", |root| apps::PRIMES.clippy(root)),
    ("apps build", apps::build),
    ("size", |root| size::run(root, None)),
];

pub(crate) fn run(root: &Path, fuzz_seconds: u64, skip_firmware: bool) -> anyhow::Result<()> {
    // Not a step: when only Debian packages are missing, its error is the
    // one line to read.
    println!("xtask: ==> setup");
    setup::run(root, skip_firmware, false)?;
    report_free_space(root);
    let mut steps = Steps::default();
    let cargo = || cmd::cargo(root);

    steps.run("fmt", || {
        cmd::run(cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    steps.run("clippy", || {
        cmd::run(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    // The tests that boot the firmware on QEMU read its ELF and
    // target/apps/*.wasm: build them before the tests run.
    if skip_firmware {
        steps.skip(
            "firmware, apps, size",
            &format!("--skip-firmware (or {SKIP_FIRMWARE_ENV})"),
        );
    } else {
        for (name, step) in FIRMWARE_STEPS {
            steps.run(name, || step(root))?;
        }
    }
    // With the firmware built, the tests against it must run, not skip;
    // they are told where this build put it (CARGO_TARGET_DIR moves it).
    let built = if skip_firmware {
        None
    } else {
        Some((
            crate::firmware::elf_path(root)?,
            crate::apps::out_dir(root)?,
        ))
    };
    let tests = |args: &[&str]| {
        let mut command = cargo();
        command.args(args);
        // Setup made sure Chromium is there: the dashboard's browser tests
        // must run, not skip.
        command.env("WASMBED_REQUIRE_BROWSER", "1");
        if let Some((elf, apps)) = &built {
            command
                .env("WASMBED_REQUIRE_FIRMWARE", "1")
                .env("WASMBED_FIRMWARE", elf)
                .env("WASMBED_APPS", apps);
        }
        cmd::run(&mut command)
    };
    steps.run("nextest", || {
        tests(&["nextest", "run", "--workspace", "--all-features"])
    })?;
    // The REST API, controller and dashboard tests again, on the
    // Kubernetes store (KubeStore over the fake API server of wasmbed-k8s).
    steps.run("nextest wasmbed-api on the Kubernetes store", || {
        let mut command = cargo();
        command
            .args(["nextest", "run", "-p", "wasmbed-api", "--tests"])
            .env("WASMBED_TEST_STORE", "kubernetes")
            .env("WASMBED_REQUIRE_BROWSER", "1");
        cmd::run(&mut command)
    })?;
    // The CLI's tests that spawn `wasmbed api`, again with its resources
    // in Kubernetes: the fake API server served over loopback HTTP, found
    // through a kubeconfig (host/cli/tests/common). A run that never
    // reaches the fake fails.
    steps.run(
        "nextest wasmbed-cli (wasmbed api) on the Kubernetes store",
        || {
            let mut command = cargo();
            command
                .args(["nextest", "run", "-p", "wasmbed-cli"])
                .args(["--test", "api", "--test", "registration"])
                .env("WASMBED_TEST_STORE", "kubernetes");
            cmd::run(&mut command)
        },
    )?;
    steps.run("schemathesis", || {
        schemathesis::run(root, schemathesis::DEFAULT_MAX_EXAMPLES, false)
    })?;
    steps.run("k8s-validate", || kubernetes::validate(root))?;
    // The Robot suite boots the firmware built above, like the tests.
    if skip_firmware {
        steps.skip(
            "robot",
            &format!("--skip-firmware (or {SKIP_FIRMWARE_ENV})"),
        );
    } else {
        steps.run("robot", || robot::run(root, robot::Backend::Qemu))?;
    }
    steps.run("doctest", || {
        cmd::run(cargo().args(["test", "--workspace", "--doc", "--all-features"]))
    })?;
    for target in NO_STD_TARGETS {
        steps.run(&format!("no_std {target}"), || {
            cmd::run(cargo().args([
                "build",
                "-p",
                "wasmbed-protocol",
                "--no-default-features",
                "--target",
                target,
            ]))
        })?;
    }
    // The device agent goes into firmware: it must build without std.
    steps.run("no_std agent thumbv7m-none-eabi", || {
        cmd::run(cargo().args([
            "build",
            "-p",
            "wasmbed-agent",
            "--no-default-features",
            "--features",
            "wasmi",
            "--target",
            "thumbv7m-none-eabi",
        ]))
    })?;
    for package in FFI_PACKAGES {
        steps.run(&format!("ffi {package} thumbv7m-none-eabi"), || {
            cmd::run(cargo().args([
                "build",
                "-p",
                package,
                "--target",
                "thumbv7m-none-eabi",
                "--release",
            ]))
        })?;
    }
    // The Zephyr image, and the firmware tests and Robot suite against it,
    // where a west workspace exists; a named skip where none does (CI has
    // no Zephyr: it is in no package registry).
    if skip_firmware {
        steps.skip(
            "zephyr",
            &format!("--skip-firmware (or {SKIP_FIRMWARE_ENV})"),
        );
    } else {
        match crate::zephyr::workspace_from_env(root) {
            None => steps.skip(
                "zephyr build and tests",
                "no Zephyr workspace (ZEPHYR_BASE unset, no zephyr-workspace/): see `cargo xtask zephyr`",
            ),
            Some(_) => {
                let built = steps.run("zephyr build", || crate::zephyr::run(root))?;
                let crate::zephyr::Outcome::Built(elf) = built else {
                    anyhow::bail!("the Zephyr workspace vanished during the run");
                };
                let apps = crate::apps::out_dir(root)?;
                steps.run("zephyr firmware tests", || zephyr_tests(root, &elf, &apps))?;
                steps.run("zephyr robot", || {
                    let image = robot::Image {
                        elf: &elf,
                        board: crate::zephyr::QEMU_BOARD,
                    };
                    robot::run_with(root, robot::Backend::Qemu, Some(image))
                })?;
            }
        }
    }
    if fuzz::exists(root) {
        let targets = steps.run("fuzz list", || fuzz::list(root))?;
        for target in &targets {
            steps.run(&format!("fuzz {target} ({fuzz_seconds}s)"), || {
                fuzz::run_target(root, target, fuzz_seconds)
            })?;
        }
    } else {
        let dir = fuzz::fuzz_dir(root);
        steps.skip(
            "fuzz",
            &format!("no cargo-fuzz project at {}", dir.display()),
        );
    }

    steps.summary();
    Ok(())
}

/// The tests that boot the firmware in QEMU, against the Zephyr image on
/// its Ethernet-linked board.
fn zephyr_tests(root: &Path, elf: &Path, apps: &Path) -> anyhow::Result<()> {
    let mut command = cmd::cargo(root);
    command
        .args([
            "nextest",
            "run",
            "-p",
            "wasmbed-emulator",
            "--test",
            "firmware",
        ])
        .env("WASMBED_REQUIRE_FIRMWARE", "1")
        .env("WASMBED_FIRMWARE", elf)
        .env("WASMBED_BOARD", crate::zephyr::QEMU_BOARD)
        .env("WASMBED_APPS", apps);
    Ok(cmd::run(&mut command)?)
}

/// The steps run so far, with their times, for the closing summary.
#[derive(Debug, Default)]
struct Steps {
    done: Vec<(String, Duration)>,
    skipped: Vec<String>,
}

/// Prints the free space where the builds go: a full disk fails a step with
/// an error far from its cause (a linker or rustc that cannot write), and a
/// whole run of the tests needs about 8 GiB.
fn report_free_space(dir: &Path) {
    let free = std::process::Command::new("df")
        .args(["-h", "--output=avail,target"])
        .arg(dir)
        .output();
    match free {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some(line) = text.lines().nth(1) {
                println!("xtask: free disk space (available, mount): {}", line.trim());
            }
        }
        _ => println!("xtask: free disk space: unknown (`df` failed)"),
    }
}

impl Steps {
    /// Runs one step, printing its name before and its time after. A failure
    /// becomes an error that names the step.
    fn run<T, E>(&mut self, name: &str, step: impl FnOnce() -> Result<T, E>) -> anyhow::Result<T>
    where
        E: Into<anyhow::Error>,
    {
        println!("xtask: ==> {name}");
        let start = Instant::now();
        let result = step().map_err(Into::into);
        let took = start.elapsed();
        match result {
            Ok(value) => {
                println!("xtask: <== {name}: ok in {}", secs(took));
                self.done.push((name.to_owned(), took));
                Ok(value)
            }
            Err(err) => {
                println!("xtask: <== {name}: FAILED after {}", secs(took));
                report_free_space(Path::new("."));
                println!(
                    "xtask: stopped at step `{name}`; {} step(s) passed before it",
                    self.done.len()
                );
                Err(err.context(format!("step `{name}` failed")))
            }
        }
    }

    /// Records a step that cannot run yet, and says why.
    fn skip(&mut self, name: &str, why: &str) {
        println!("xtask: --- {name}: skipped: {why}");
        self.skipped.push(name.to_owned());
    }

    /// Prints every step's time and the closing `N passed, 0 failed` line.
    fn summary(&self) {
        let width = self
            .done
            .iter()
            .map(|(name, _)| name.len())
            .max()
            .unwrap_or(0);
        println!();
        for (name, took) in &self.done {
            println!("xtask: {name:<width$}  {:>8}  ok", secs(*took));
        }
        for name in &self.skipped {
            println!("xtask: {name:<width$}  {:>8}  skipped", "-");
        }
        let total: Duration = self.done.iter().map(|(_, took)| *took).sum();
        println!("xtask: all steps passed in {}", secs(total));
        let skipped = match self.skipped.len() {
            0 => String::new(),
            n => format!(", {n} skipped"),
        };
        println!("xtask: {} passed, 0 failed{skipped}", self.done.len());
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_step_error_names_the_step() {
        let mut steps = Steps::default();
        let ok = steps.run("first", || Ok::<_, anyhow::Error>(7));
        assert_eq!(ok.ok(), Some(7));
        let err = steps
            .run("second", || Err::<(), _>(anyhow::anyhow!("boom")))
            .expect_err("the step fails");
        assert_eq!(format!("{err:#}"), "step `second` failed: boom");
        assert_eq!(steps.done.len(), 1);
    }

    #[test]
    fn help_lists_the_firmware_steps_in_order() {
        use clap::CommandFactory as _;
        let help = crate::Cli::command()
            .find_subcommand_mut("test")
            .expect("a test subcommand")
            .render_long_help()
            .to_string();
        let setup = help.find("  setup  ").expect("a setup step");
        let fmt = help.find("  fmt  ").expect("a fmt step");
        assert!(setup < fmt, "setup comes first");
        let mut from = 0;
        for (name, _) in FIRMWARE_STEPS {
            let at = help[from..]
                .find(&format!("  {name}  "))
                .unwrap_or_else(|| {
                    panic!(
                        "`cargo xtask test --help` lists no step `{name}` after the previous one"
                    )
                });
            from += at + name.len();
        }
        let nextest = help.find("  nextest  ").expect("a nextest step");
        assert!(from < nextest, "the firmware steps run before the tests");
        let schemathesis = help.find("  schemathesis  ").expect("a schemathesis step");
        assert!(nextest < schemathesis, "Schemathesis runs after the tests");
        let k8s = help.find("  k8s-validate  ").expect("a k8s-validate step");
        assert!(
            schemathesis < k8s,
            "the manifests are validated after Schemathesis"
        );
        let robot = help.find("  robot  ").expect("a robot step");
        let doctest = help.find("  doctest  ").expect("a doctest step");
        assert!(
            nextest < robot && robot < doctest,
            "the Robot tests run right after the tests"
        );
    }
}
