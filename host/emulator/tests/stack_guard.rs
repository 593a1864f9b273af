//! The firmware's stack guard, for real in QEMU: `stack-overflow-selftest`
//! (a second binary of `firmware/mps2`, built with the firmware and never
//! shipped) arms the guard and recurses without end. The guard must turn
//! that into one `fatal: stack overflow` line and a reset, in thread mode
//! and with interrupts masked (where the fault escalates to a HardFault).
#![allow(clippy::print_stdout)] // tests say on stdout why they skip

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::spec;
use wasmbed_emulator::{Backend, ConsoleMark, EmulatorManager, Pattern};

const PATIENCE: Duration = Duration::from_secs(30);
/// Nothing listens there; the image never uses its link.
const NO_GATEWAY: &str = "127.0.0.1:9";
/// The test image's `[[bin]]` name.
const SELFTEST: &str = "stack-overflow-selftest";

/// The self-test image, or `None` (with a message) when QEMU or the image
/// is missing. Where: `WASMBED_STACK_SELFTEST`, else next to the firmware
/// in `WASMBED_FIRMWARE` (`cargo xtask test` sets it; both binaries are
/// built by the same `cargo build`), else the default release directory.
/// With `WASMBED_REQUIRE_FIRMWARE` set, a missing one fails instead.
fn selftest_or_skip(test: &str) -> Option<PathBuf> {
    let required = std::env::var_os("WASMBED_REQUIRE_FIRMWARE").is_some();
    if !Backend::Qemu.available() {
        assert!(!required, "qemu-system-arm is required but not on PATH");
        println!("qemu-system-arm not on PATH: skipping {test} (apt-get install qemu-system-arm)");
        return None;
    }
    let image = if let Some(path) = std::env::var_os("WASMBED_STACK_SELFTEST") {
        PathBuf::from(path)
    } else if let Some(firmware) = std::env::var_os("WASMBED_FIRMWARE") {
        Path::new(&firmware).with_file_name(SELFTEST)
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../firmware/mps2/target/thumbv7m-none-eabi/release")
            .join(SELFTEST)
    };
    if !image.is_file() {
        assert!(!required, "{} is required but missing", image.display());
        println!("{SELFTEST} not built: skipping {test} (cargo xtask firmware)");
        return None;
    }
    Some(image)
}

/// The `0x...` number that follows `key` in `text`.
fn hex_after(text: &str, key: &str) -> u32 {
    let start = text
        .find(key)
        .unwrap_or_else(|| panic!("no {key:?} in {text:?}"))
        + key.len();
    let digits = text[start..]
        .strip_prefix("0x")
        .unwrap_or_else(|| panic!("no hex number after {key:?} in {text:?}"));
    let end = digits
        .find(|c: char| !c.is_ascii_hexdigit())
        .unwrap_or(digits.len());
    u32::from_str_radix(&digits[..end], 16).expect("hex")
}

#[tokio::test]
async fn a_stack_overflow_hits_the_guard_and_resets_the_device() {
    let test = "a_stack_overflow_hits_the_guard_and_resets_the_device";
    let Some(image) = selftest_or_skip(test) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let manager = EmulatorManager::new();
    let device = manager
        .start(spec(
            "qemu-0",
            &image,
            &dir.path().join("qemu-0"),
            NO_GATEWAY,
        ))
        .await
        .expect("start");
    let overflow = Pattern::regex(
        r"^fatal: stack overflow \(MemManage (at 0x[0-9a-f]{8}|while stacking an exception)(, escalated to a hard fault)?\); resetting$",
    )
    .expect("regex");

    let mut mark = ConsoleMark::START;
    // Boot 0 overflows in thread mode, boot 1 with interrupts masked, and
    // boot 2 shows that the device came back after that too.
    for boot in 0..2 {
        let banner = device
            .wait_for_after(
                mark,
                format!("{SELFTEST}: boot {boot}; MPU regions Some("),
                PATIENCE,
            )
            .await
            .unwrap_or_else(|e| panic!("boot {boot}: {e}"));
        println!("{}", banner.text);
        let fatal = device
            .wait_for_after(banner.mark_after(), overflow.clone(), PATIENCE)
            .await
            .unwrap_or_else(|e| panic!("no overflow report after boot {boot}: {e}"));
        println!("{}", fatal.text);
        // Nothing in between: the overflow is the guard's first report.
        assert_eq!(fatal.index, banner.index + 1, "{}", fatal.text);
        if fatal.text.contains("MemManage at ") {
            let at = hex_after(&fatal.text, "MemManage at ");
            let base = hex_after(&banner.text, "guard ");
            let end = hex_after(&banner.text, "..");
            assert!(
                (base..end).contains(&at),
                "the fault at {at:#x} is not in the guard {base:#x}..{end:#x}"
            );
        }
        if boot == 1 {
            // MemManage cannot preempt masked code: a HardFault reports it.
            assert!(
                fatal.text.contains("escalated to a hard fault"),
                "{}",
                fatal.text
            );
        }
        mark = fatal.mark_after();
    }
    device
        .wait_for_after(mark, format!("{SELFTEST}: boot 2;"), PATIENCE)
        .await
        .expect("the device boots again after the reset");
    manager.stop("qemu-0").await.expect("stop");
}
