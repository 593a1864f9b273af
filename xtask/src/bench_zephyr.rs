//! `cargo xtask bench zephyr`: the Zephyr + WAMR image beside the
//! bare-metal firmware on the same emulated board.
//!
//! Builds both images (and the sample applications), prints the Rust
//! firmware's flash and RAM (`cargo xtask size`) and the Zephyr image's by
//! part (kernel, network, mbedTLS, WAMR, the agent, ...) from the linker
//! map of its build, then runs `wasmbed-bench zephyr [ARGS]`: boot to
//! enrolled, the TLS handshakes and `primes` in guest instructions, the two
//! firmwares interleaved.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::cmd;
use crate::zephyr::Outcome;

/// Where RAM starts on the MPS2 boards: output sections below it are flash.
const RAM_START: u64 = 0x2000_0000;
/// The targets for the Zephyr image.
const FLASH_TARGET: u64 = 512 * 1024;
const RAM_TARGET: u64 = 192 * 1024;
/// One WebAssembly page, the applications' memory.
const WASM_PAGE: u64 = 64 * 1024;

/// Bytes of flash and RAM one part of the image takes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) flash: u64,
    pub(crate) ram: u64,
}

/// The part of the image an input file belongs to.
fn part_of(path: &str) -> &'static str {
    let path = path.to_ascii_lowercase();
    let has = |needle: &str| path.contains(needle);
    if path == "padding" {
        "alignment padding"
    } else if has("libwasmbed_agent_ffi") {
        "agent (Rust, with the protocol)"
    } else if has("wasm-micro-runtime") || has("wamr") {
        "WAMR"
    } else if has("mbedtls") {
        "mbedTLS"
    } else if has("subsys/net")
        || has("subsys__net")
        || has("drivers__ethernet")
        || has("drivers/ethernet")
        || has("net_buf")
        || has("drivers__net")
    {
        "network (IP, DHCP, sockets, LAN9118)"
    } else if has("picolibc") || has("libc") || has("libgcc") {
        "C library"
    } else if has("app/libapp.a") {
        "application (C)"
    } else {
        "kernel, arch, other drivers"
    }
}

/// Sections that are not loaded into the device: debug information and
/// notes for tools.
fn is_metadata(output_section: &str) -> bool {
    [
        ".debug",
        ".comment",
        ".ARM.attributes",
        ".stab",
        ".gnu.attributes",
        ".note",
    ]
    .iter()
    .any(|prefix| output_section.starts_with(prefix))
}

/// Reads a GNU ld map (`zephyr.map`): every input section's size, summed by
/// part. Sections placed below RAM count as flash; sections in RAM count
/// as RAM, and as flash too when they have a load address (initialised
/// data copied at boot). Padding (`*fill*`) counts for its output section.
pub(crate) fn usage_by_part(map: &str) -> BTreeMap<&'static str, Usage> {
    let mut parts: BTreeMap<&'static str, Usage> = BTreeMap::new();
    let Some(start) = map.find("Linker script and memory map") else {
        return parts;
    };
    // The output section being read: (in RAM, loaded from flash).
    let mut output: Option<(bool, bool)> = None;
    let mut pending_output = false;
    let mut pending_input = false;
    for line in map[start..].lines().skip(1) {
        let indented = line.starts_with(' ');
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.is_empty() {
            continue;
        }
        let hex = |t: &str| {
            t.strip_prefix("0x")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
        };
        if !indented {
            // An output section: `name addr size [load address X]`, or its
            // name alone with the numbers on the next line.
            output = None;
            pending_output = false;
            match tokens.as_slice() {
                [name, ..] if is_metadata(name) => {}
                [_, addr, _, rest @ ..] if hex(addr).is_some() => {
                    let vma = hex(addr).unwrap_or(0);
                    output = Some((vma >= RAM_START, rest.contains(&"load")));
                }
                [_] => pending_output = true,
                _ => {}
            }
            continue;
        }
        if pending_output {
            if let [addr, _, rest @ ..] = tokens.as_slice() {
                if let Some(vma) = hex(addr) {
                    output = Some((vma >= RAM_START, rest.contains(&"load")));
                }
            }
            pending_output = false;
            continue;
        }
        let Some((in_ram, loaded)) = output else {
            continue;
        };
        // An input section: ` .name addr size file`, ` *fill* addr size`,
        // or ` .long.name` with the rest on the next line.
        let (size, file) = match tokens.as_slice() {
            ["*fill*", _, size, ..] => (hex(size), "padding"),
            [name, addr, size, file, ..] if name.starts_with('.') && hex(addr).is_some() => {
                (hex(size), *file)
            }
            [addr, size, file, ..] if pending_input && hex(addr).is_some() => (hex(size), *file),
            [name] if name.starts_with('.') => {
                pending_input = true;
                continue;
            }
            _ => (None, ""),
        };
        pending_input = false;
        let Some(size) = size else {
            continue;
        };
        let usage = parts.entry(part_of(file)).or_default();
        if in_ram {
            usage.ram += size;
            if loaded {
                usage.flash += size;
            }
        } else {
            usage.flash += size;
        }
    }
    parts
}

fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

/// Prints the Zephyr image's flash and RAM by part, with the targets.
pub(crate) fn print_zephyr_size(map_path: &Path) -> anyhow::Result<()> {
    let map = std::fs::read_to_string(map_path).with_context(|| {
        format!(
            "reading {} (build the image with `cargo xtask zephyr`)",
            map_path.display()
        )
    })?;
    let parts = usage_by_part(&map);
    if parts.is_empty() {
        bail!("{} has no memory map", map_path.display());
    }
    println!("xtask: Zephyr image by part ({}):", map_path.display());
    println!("xtask:   {:<40} {:>12} {:>12}", "part", "flash", "RAM");
    let mut total = Usage::default();
    for (part, usage) in &parts {
        println!(
            "xtask:   {part:<40} {:>12} {:>12}",
            kib(usage.flash),
            kib(usage.ram)
        );
        total.flash += usage.flash;
        total.ram += usage.ram;
    }
    println!(
        "xtask:   {:<40} {:>12} {:>12}",
        "total",
        kib(total.flash),
        kib(total.ram)
    );
    // The page is allocated in WAMR's pool, a static buffer counted above.
    let besides_page = total.ram.saturating_sub(WASM_PAGE);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "xtask:   target: flash {} of 512 KiB ({}); RAM besides the 64 KiB WebAssembly page (in WAMR's pool) {} of 192 KiB ({})",
        kib(total.flash),
        verdict(total.flash <= FLASH_TARGET),
        kib(besides_page),
        verdict(besides_page <= RAM_TARGET)
    );
    Ok(())
}

pub(crate) fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let zephyr = match crate::zephyr::run(root)? {
        Outcome::Built(elf) => elf,
        Outcome::Skipped(why) => bail!("cannot compare without the Zephyr image: {why}"),
    };
    let rust = crate::firmware::build(root)?;
    crate::apps::build(root)?;
    crate::size::run(root, Some(&rust))?;
    print_zephyr_size(&zephyr.with_file_name("zephyr.map"))?;
    cmd::run(cmd::cargo(root).args(["build", "--release", "-p", "wasmbed-bench"]))?;
    let release = cmd::target_dir(root)?.join("release");
    let mut bench = Command::new(release.join("wasmbed-bench"));
    bench
        .current_dir(root)
        .arg("zephyr")
        .arg("--rust")
        .arg(&rust)
        .arg("--zephyr")
        .arg(&zephyr)
        .arg("--primes")
        .arg(crate::apps::out_dir(root)?.join("primes.wasm"))
        .args(args);
    Ok(cmd::run(&mut bench)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = "\
Discarded input sections

 .text.unused   0x00000000       0x40 zephyr/kernel/libkernel.a(sched.c.obj)

Linker script and memory map

LOAD app/libapp.a
text            0x000000c0     0x2000
 .text.z_sched  0x000000c0      0x100 zephyr/kernel/libkernel.a(sched.c.obj)
 .text.wb_agent_poll
                0x000001c0      0x400 /w/target/thumbv7m-none-eabi/release/libwasmbed_agent_ffi.a(x.o)
 *fill*         0x000005c0        0x4 
 .text.mbedtls_ssl_handshake
                0x000005c4      0x200 modules/mbedtls/libmbedTLSBase.a(ssl_tls.c.obj)
 .text.net_if_up
                0x000007c4       0x80 zephyr/subsys/net/ip/libsubsys__net__ip.a(net_if.c.obj)
 .text.wasm_runtime_call_wasm
                0x00000844      0x300 modules/wasm-micro-runtime/libwamr.a(wasm_runtime_common.c.obj)
datas           0x20000000       0x20 load address 0x00002100
 .data.x        0x20000000       0x20 app/libapp.a(main.c.obj)
bss             0x20000020     0x1000
 .bss.heap      0x20000020     0x1000 zephyr/lib/libc/common/liblib__libc__common.a(malloc.c.obj)

.debug_info     0x00000000   0x9000
 .debug_info    0x00000000   0x9000 zephyr/kernel/libkernel.a(sched.c.obj)
";

    #[test]
    fn the_map_is_summed_by_part_and_memory() {
        let parts = usage_by_part(MAP);
        let get = |part: &str| parts.get(part).copied().unwrap_or_default();
        assert_eq!(
            get("kernel, arch, other drivers"),
            Usage {
                flash: 0x100,
                ram: 0
            }
        );
        assert_eq!(
            get("agent (Rust, with the protocol)"),
            Usage {
                flash: 0x400,
                ram: 0
            }
        );
        assert_eq!(get("alignment padding"), Usage { flash: 4, ram: 0 });
        assert_eq!(get("mbedTLS").flash, 0x200);
        assert_eq!(get("network (IP, DHCP, sockets, LAN9118)").flash, 0x80);
        assert_eq!(get("WAMR").flash, 0x300);
        assert_eq!(
            get("application (C)"),
            Usage {
                flash: 0x20,
                ram: 0x20
            }
        );
        assert_eq!(
            get("C library"),
            Usage {
                flash: 0,
                ram: 0x1000
            }
        );
        let discarded: u64 = parts.values().map(|u| u.flash).sum();
        assert_eq!(discarded, 0x100 + 0x400 + 4 + 0x200 + 0x80 + 0x300 + 0x20);
    }
}
