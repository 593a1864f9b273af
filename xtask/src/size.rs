//! `cargo xtask size`: what the firmware image takes of the flash and RAM
//! budgeted in `firmware/mps2/memory.x`, and what takes the flash.
//!
//! FLASH holds what the image loads: the sections linked into the FLASH
//! region (`.vector_table`, `.text`, `.rodata`) and the load image of
//! `.data`. RAM holds the statics (`.data`, `.bss`, `.uninit`), the heap
//! among them (the firmware's `heap::init::MEMORY`); the stack is what is
//! left above them, from cortex-m-rt's `__sheap` to `_stack_start`.
//!
//! Flash is attributed to crates by the first path segment of each
//! symbol's demangled name, so a generic function counts under the crate
//! that defines it, whoever instantiated it (`core::ptr::drop_in_place`
//! of any type is `core`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SectionFlags};

use crate::{cmd, firmware};

/// A memory region of `memory.x`: the budget of what links into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Region {
    pub(crate) name: &'static str,
    pub(crate) origin: u64,
    pub(crate) length: u64,
}

/// `FLASH` in `firmware/mps2/memory.x`.
pub(crate) const FLASH: Region = Region {
    name: "FLASH",
    origin: 0,
    length: 768 * 1024,
};

/// `RAM` in `firmware/mps2/memory.x`.
pub(crate) const RAM: Region = Region {
    name: "RAM",
    origin: 0x2000_0000,
    length: 128 * 1024,
};

/// The heap: a static array, found by the end of its demangled name.
const HEAP_SYMBOL: &str = "heap::init::MEMORY";
/// The allocator static, holding the block reserved for a WebAssembly
/// page (64 KiB): heap too.
const PAGE_BLOCK_SYMBOL: &str = "heap::HEAP";
/// cortex-m-rt: the end of the statics, the lowest address of the stack.
const STACK_BOTTOM: &str = "__sheap";
/// cortex-m-rt: the initial stack pointer, the top of RAM.
const STACK_TOP: &str = "_stack_start";
/// The sections whose symbols the flash tables attribute.
const CODE_SECTIONS: [&str; 2] = [".text", ".rodata"];
/// Rows of the largest-symbols table.
const TOP_SYMBOLS: usize = 15;
/// Rows of the by-crate table (then one row for the rest).
const TOP_CRATES: usize = 12;
/// Symbol names are cut to this many characters.
const NAME_WIDTH: usize = 90;

/// An allocated section of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Section {
    name: String,
    address: u64,
    size: u64,
    /// Whether the section has bytes in the image (not `NOBITS`).
    loaded: bool,
}

/// A sized symbol in one of [`CODE_SECTIONS`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Symbol {
    /// Demangled, without the hash.
    name: String,
    section: String,
    size: u64,
}

/// What the report needs from the ELF.
#[derive(Debug, Default)]
struct Image {
    sections: Vec<Section>,
    symbols: Vec<Symbol>,
    /// Size of the heap array, when found.
    heap: Option<u64>,
    /// `_stack_start - __sheap`, when both are defined.
    stack: Option<u64>,
}

/// The image's use of the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Usage {
    flash: u64,
    ram: u64,
}

/// `cargo xtask size [--elf PATH]`: prints the report of `elf`, or of the
/// release firmware (built first if missing); fails if over budget.
pub(crate) fn run(root: &Path, elf: Option<&Path>) -> anyhow::Result<()> {
    let elf = match elf {
        Some(elf) => elf.to_path_buf(),
        None => {
            let elf = firmware::elf_path(root)?;
            if elf.is_file() {
                elf
            } else {
                println!("xtask: {} is missing; building it", cmd::show(root, &elf));
                firmware::build(root)?
            }
        }
    };
    let image = read(&elf)?;
    print!(
        "xtask: size of {}\n{}",
        cmd::show(root, &elf),
        report(&image)
    );
    let problems = over_budget(usage(&image.sections));
    if !problems.is_empty() {
        bail!(
            "over budget (the budgets of firmware/mps2/memory.x): {}",
            problems.join("; ")
        );
    }
    Ok(())
}

/// Reads the sections and symbols of the ELF file at `path`.
fn read(path: &Path) -> anyhow::Result<Image> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file = object::File::parse(&*data)
        .with_context(|| format!("{} is not an ELF file", path.display()))?;

    let mut image = Image::default();
    let mut code_sections = HashMap::new();
    for section in file.sections() {
        let SectionFlags::Elf { sh_flags } = section.flags() else {
            continue;
        };
        if sh_flags & u64::from(object::elf::SHF_ALLOC) == 0 {
            continue;
        }
        let name = section.name().context("a section name is not UTF-8")?;
        if CODE_SECTIONS.contains(&name) {
            code_sections.insert(section.index(), name.to_owned());
        }
        image.sections.push(Section {
            name: name.to_owned(),
            address: section.address(),
            size: section.size(),
            loaded: section.file_range().is_some(),
        });
    }

    let mut seen = HashSet::new();
    let (mut stack_bottom, mut stack_top) = (None, None);
    for symbol in file.symbols() {
        let Ok(raw) = symbol.name() else { continue };
        match raw {
            STACK_BOTTOM => stack_bottom = Some(symbol.address()),
            STACK_TOP => stack_top = Some(symbol.address()),
            _ => {}
        }
        if symbol.size() == 0 {
            continue;
        }
        let name = demangle(raw);
        if name.ends_with(HEAP_SYMBOL) || name.ends_with(PAGE_BLOCK_SYMBOL) {
            image.heap = Some(image.heap.unwrap_or(0) + symbol.size());
        }
        let Some(section) = symbol.section_index().and_then(|i| code_sections.get(&i)) else {
            continue;
        };
        // Aliases (one function under two names) count once.
        if seen.insert((symbol.address(), symbol.size())) {
            image.symbols.push(Symbol {
                name,
                section: section.clone(),
                size: symbol.size(),
            });
        }
    }
    image.stack = stack_top
        .zip(stack_bottom)
        .map(|(top, bottom)| top.saturating_sub(bottom));
    Ok(image)
}

/// A symbol's demangled name without the hash, or the name itself when it
/// is not a Rust symbol.
fn demangle(raw: &str) -> String {
    match rustc_demangle::try_demangle(raw) {
        Ok(name) => format!("{name:#}"),
        Err(_) => raw.to_owned(),
    }
}

/// The crate a symbol is attributed to: the first path segment of its
/// demangled name. Symbols that are not Rust paths have no crate: LLVM's
/// outlined code (`OUTLINED_FUNCTION_N`, shared by many crates), anonymous
/// constants (`.Lanon.*`), and the rest (`(unmangled)`: compiler
/// intrinsics such as `__aeabi_memcpy`, assembly, `#[no_mangle]` items).
fn crate_of(name: &str) -> &str {
    if name.contains("::") {
        path_crate(name).unwrap_or("(unknown)")
    } else if name.starts_with("OUTLINED_FUNCTION") {
        "(outlined code)"
    } else if name.starts_with(".L") {
        "(anonymous)"
    } else {
        "(unmangled)"
    }
}

/// The first segment of the path a demangled name starts with: for
/// `<Type as Trait>::f`, the type's crate, or the trait's when the type is
/// not a path (`<[u8] as core::fmt::Debug>::fmt`, `<&mut W as ...>`).
fn path_crate(name: &str) -> Option<&str> {
    let mut rest = name;
    loop {
        let trimmed = rest.trim_start_matches(['<', '&', '*', '[', '(', ' ']);
        match ["mut ", "const ", "dyn "]
            .iter()
            .find_map(|prefix| trimmed.strip_prefix(prefix))
        {
            Some(after) => rest = after,
            None => {
                rest = trimmed;
                break;
            }
        }
    }
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let (first, after) = rest.split_at(end);
    if !first.is_empty() && after.starts_with("::") {
        return Some(first);
    }
    // Not a path (a primitive, a type parameter): try the trait.
    let (_, after_as) = after.split_once(" as ")?;
    path_crate(after_as)
}

/// FLASH and RAM used by the sections.
fn usage(sections: &[Section]) -> Usage {
    let mut usage = Usage { flash: 0, ram: 0 };
    for section in sections {
        let in_ram = section.address >= RAM.origin;
        // A section linked into RAM with bytes in the image (.data) is
        // copied there from its load image in flash.
        if !in_ram || section.loaded {
            usage.flash += section.size;
        }
        if in_ram {
            usage.ram += section.size;
        }
    }
    usage
}

/// What exceeds its budget, as messages; empty when all fits.
fn over_budget(usage: Usage) -> Vec<String> {
    [(FLASH, usage.flash), (RAM, usage.ram)]
        .into_iter()
        .filter(|(region, used)| *used > region.length)
        .map(|(region, used)| {
            format!(
                "{} {} KiB > {} KiB (by {} bytes)",
                region.name,
                kib(used),
                kib(region.length),
                used - region.length
            )
        })
        .collect()
}

/// The whole report, as printed.
fn report(image: &Image) -> String {
    let mut out = String::new();
    sections_table(&mut out, image);
    out.push('\n');
    symbols_table(&mut out, &image.symbols);
    out.push('\n');
    crates_table(&mut out, image);
    out
}

fn sections_table(out: &mut String, image: &Image) {
    let sections: Vec<&Section> = image.sections.iter().filter(|s| s.size > 0).collect();
    let width = sections.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let _ = writeln!(
        out,
        "  {:<width$}  {:<10}  {:>8}  {:>9}",
        "section", "address", "bytes", "KiB"
    );
    for s in &sections {
        let _ = writeln!(
            out,
            "  {:<width$}  {:#010x}  {:>8}  {:>5} KiB",
            s.name,
            s.address,
            s.size,
            kib(s.size)
        );
    }
    out.push('\n');

    let used = usage(&image.sections);
    let line = |out: &mut String, label: &str, used: u64, budget: u64, note: &str| {
        let _ = writeln!(
            out,
            "  {label:<10} {:>6} KiB of {:>5} KiB  {:>5}%  {note}",
            kib(used),
            kib(budget),
            percent(used, budget)
        );
    };
    line(
        out,
        "FLASH",
        used.flash,
        FLASH.length,
        "(.vector_table .text .rodata, .data's load image)",
    );
    line(out, "RAM", used.ram, RAM.length, "(.data .bss .uninit)");
    match image.heap {
        Some(heap) => {
            line(
                out,
                "  heap",
                heap,
                RAM.length,
                &format!("({HEAP_SYMBOL} + {PAGE_BLOCK_SYMBOL}: general heap, page block)"),
            );
            line(
                out,
                "  statics",
                used.ram.saturating_sub(heap),
                RAM.length,
                "(other than the heap)",
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  {:<10} not found (no symbol ending in {HEAP_SYMBOL})",
                "  heap"
            );
        }
    }
    match image.stack {
        Some(stack) => line(
            out,
            "stack",
            stack,
            RAM.length,
            "(_stack_start - __sheap: the RAM left)",
        ),
        None => {
            let _ = writeln!(
                out,
                "  {:<10} not found (no {STACK_TOP} or {STACK_BOTTOM})",
                "stack"
            );
        }
    }
}

fn symbols_table(out: &mut String, symbols: &[Symbol]) {
    let mut largest: Vec<&Symbol> = symbols.iter().collect();
    largest.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
    let _ = writeln!(out, "  largest symbols ({})", CODE_SECTIONS.join(", "));
    for s in largest.iter().take(TOP_SYMBOLS) {
        let _ = writeln!(
            out,
            "  {:>5} KiB  {:<7}  {}",
            kib(s.size),
            s.section,
            shorten(&s.name, NAME_WIDTH)
        );
    }
}

fn crates_table(out: &mut String, image: &Image) {
    let code: Vec<&Section> = image
        .sections
        .iter()
        .filter(|s| CODE_SECTIONS.contains(&s.name.as_str()))
        .collect();
    let total: u64 = code.iter().map(|s| s.size).sum();
    let crates = by_crate(&image.symbols);
    let mut rows: Vec<(String, u64)> = crates
        .iter()
        .take(TOP_CRATES)
        .map(|(name, size)| ((*name).to_owned(), *size))
        .collect();
    let rest = &crates[crates.len().min(TOP_CRATES)..];
    if !rest.is_empty() {
        rows.push((
            format!("{} others", rest.len()),
            rest.iter().map(|(_, size)| size).sum(),
        ));
    }
    // What no symbol covers: string literals and other merged constants.
    for section in code {
        let attributed: u64 = image
            .symbols
            .iter()
            .filter(|s| s.section == section.name)
            .map(|s| s.size)
            .sum();
        let unattributed = section.size.saturating_sub(attributed);
        if unattributed > 0 {
            rows.push((format!("({} without symbol)", section.name), unattributed));
        }
    }
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let _ = writeln!(
        out,
        "  what takes the flash: {} KiB of {}, by crate",
        kib(total),
        CODE_SECTIONS.join(" + ")
    );
    for (name, size) in rows {
        let _ = writeln!(
            out,
            "  {name:<width$}  {:>5} KiB  {:>5}%",
            kib(size),
            percent(size, total)
        );
    }
}

/// Total size per crate, largest first (then by name).
fn by_crate(symbols: &[Symbol]) -> Vec<(&str, u64)> {
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for s in symbols {
        *totals.entry(crate_of(&s.name)).or_default() += s.size;
    }
    let mut totals: Vec<(&str, u64)> = totals.into_iter().collect();
    totals.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    totals
}

/// `name`, cut to `width` characters with an ellipsis.
fn shorten(name: &str, width: usize) -> String {
    if name.chars().count() <= width {
        return name.to_owned();
    }
    let mut short: String = name.chars().take(width.saturating_sub(1)).collect();
    short.push('…');
    short
}

/// Bytes as KiB with one decimal.
fn kib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1024.0)
}

/// `part` as a percentage of `whole`, with one decimal.
fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".to_owned();
    }
    format!("{:.1}", 100.0 * part as f64 / whole as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(name: &str, address: u64, size: u64, loaded: bool) -> Section {
        Section {
            name: name.to_owned(),
            address,
            size,
            loaded,
        }
    }

    fn symbol(name: &str, size: u64) -> Symbol {
        Symbol {
            name: name.to_owned(),
            section: ".text".to_owned(),
            size,
        }
    }

    /// A layout like the firmware's: code and constants in flash, .data
    /// loaded from flash into RAM, .bss in RAM only.
    fn firmware_like() -> Vec<Section> {
        vec![
            section(".vector_table", 0, 0x400, true),
            section(".text", 0x400, 0x1000, true),
            section(".rodata", 0x1400, 0x200, true),
            section(".data", 0x2000_0000, 0x10, true),
            section(".bss", 0x2000_0010, 0x100, false),
            section(".uninit", 0x2000_0110, 0x8, false),
        ]
    }

    #[test]
    fn crate_is_the_first_path_segment() {
        assert_eq!(crate_of("wasmi::engine::Engine::new"), "wasmi");
        assert_eq!(
            crate_of(
                "wasmi::module::parser::buffered::<impl wasmi::module::parser::ModuleParser>::parse"
            ),
            "wasmi"
        );
        assert_eq!(
            crate_of(
                "<wasmbed_agent::runtime::wasmi::WasmiRuntime<C> as wasmbed_agent::runtime::Runtime>::invoke"
            ),
            "wasmbed_agent"
        );
        assert_eq!(
            crate_of("core::ptr::drop_in_place<wasmi::store::Store<()>>"),
            "core"
        );
        assert_eq!(crate_of("wasmbed_mps2::main::{closure#0}"), "wasmbed_mps2");
    }

    #[test]
    fn crate_of_an_impl_on_a_non_path_type_is_the_traits() {
        assert_eq!(crate_of("<[u8] as core::fmt::Debug>::fmt"), "core");
        assert_eq!(crate_of("<&mut W as core::fmt::Write>::write_str"), "core");
        assert_eq!(crate_of("<*const T as core::fmt::Pointer>::fmt"), "core");
        assert_eq!(crate_of("<u32 as p256::Thing>::f"), "p256");
        assert_eq!(crate_of("<dyn core::any::Any>::type_id"), "core");
    }

    #[test]
    fn names_without_a_path_are_unmangled() {
        assert_eq!(crate_of("memcpy"), "(unmangled)");
        assert_eq!(crate_of("__aeabi_memcpy4"), "(unmangled)");
        assert_eq!(crate_of("OUTLINED_FUNCTION_12"), "(outlined code)");
        assert_eq!(
            crate_of(".Lanon.f9e6bc70de61a2977fc3b488e4639698.146"),
            "(anonymous)"
        );
        assert_eq!(crate_of("HardFault"), "(unmangled)");
        assert_eq!(crate_of("<weird>::"), "(unknown)");
    }

    #[test]
    fn demangles_without_the_hash() {
        assert_eq!(
            demangle("_ZN12wasmbed_mps24heap4init6MEMORY17h279dfc380275b9adE"),
            "wasmbed_mps2::heap::init::MEMORY"
        );
        assert!(
            demangle("_ZN12wasmbed_mps24heap4init6MEMORY17h279dfc380275b9adE")
                .ends_with(HEAP_SYMBOL)
        );
        assert_eq!(demangle("memcpy"), "memcpy");
    }

    #[test]
    fn groups_symbols_by_crate_largest_first() {
        let symbols = [
            symbol("wasmi::a", 100),
            symbol("core::fmt::write", 30),
            symbol("<wasmi::B as core::fmt::Debug>::fmt", 50),
            symbol("memcpy", 40),
            symbol("alloc::x", 30),
        ];
        assert_eq!(
            by_crate(&symbols),
            [
                ("wasmi", 150),
                ("(unmangled)", 40),
                ("alloc", 30),
                ("core", 30)
            ]
        );
    }

    #[test]
    fn flash_counts_data_load_image_and_ram_counts_statics() {
        let used = usage(&firmware_like());
        assert_eq!(used.flash, 0x400 + 0x1000 + 0x200 + 0x10);
        assert_eq!(used.ram, 0x10 + 0x100 + 0x8);
    }

    #[test]
    fn budget_is_checked_per_region() {
        let fits = Usage {
            flash: FLASH.length,
            ram: RAM.length,
        };
        assert!(over_budget(fits).is_empty());
        let problems = over_budget(Usage {
            flash: FLASH.length + 1,
            ram: 10,
        });
        assert_eq!(problems, ["FLASH 768.0 KiB > 768.0 KiB (by 1 bytes)"]);
        let problems = over_budget(Usage {
            flash: 10,
            ram: RAM.length + 2048,
        });
        assert_eq!(problems, ["RAM 130.0 KiB > 128.0 KiB (by 2048 bytes)"]);
        assert_eq!(
            over_budget(Usage {
                flash: u64::MAX,
                ram: u64::MAX
            })
            .len(),
            2
        );
    }

    #[test]
    fn report_shows_budget_heap_stack_and_crates() {
        let image = Image {
            sections: firmware_like(),
            symbols: vec![symbol("wasmi::a", 0x800), symbol("memcpy", 0x133)],
            heap: Some(0x80),
            stack: None,
        };
        let text = report(&image);
        assert!(text.contains("FLASH"), "{text}");
        assert!(text.contains("  heap"), "{text}");
        assert!(text.contains("stack      not found"), "{text}");
        assert!(text.contains("wasmi"), "{text}");
        // .text is 0x1000, of which 0x933 has symbols; no .rodata has.
        assert!(
            text.contains("(.text without symbol)      1.7 KiB"),
            "{text}"
        );
        assert!(
            text.contains("(.rodata without symbol)    0.5 KiB"),
            "{text}"
        );
        let image = Image {
            heap: None,
            ..image
        };
        assert!(report(&image).contains("not found (no symbol ending in heap::init::MEMORY)"));
    }

    #[test]
    fn long_names_are_shortened() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcd", 3), "ab…");
    }

    #[test]
    fn budget_matches_the_firmware_linker_script() -> anyhow::Result<()> {
        let path = crate::workspace_root().join("firmware/mps2/memory.x");
        let script = std::fs::read_to_string(&path)?;
        for region in [FLASH, RAM] {
            let line = script
                .lines()
                .find(|l| l.trim_start().starts_with(region.name))
                .with_context(|| format!("no {} in memory.x", region.name))?;
            let expected = format!(
                "ORIGIN = {:#010x}, LENGTH = {}K",
                region.origin,
                region.length / 1024
            );
            assert!(
                line.replace("0X", "0x").contains(&expected),
                "memory.x says `{line}`, xtask expects `{expected}`"
            );
        }
        Ok(())
    }

    #[test]
    fn reads_an_elf_file() -> anyhow::Result<()> {
        // The test binary itself: a host ELF with Rust symbols.
        let image = read(&std::env::current_exe()?)?;
        assert!(
            image
                .sections
                .iter()
                .any(|s| s.name == ".text" && s.size > 0)
        );
        assert!(!image.symbols.is_empty());
        assert!(
            by_crate(&image.symbols)
                .iter()
                .any(|(name, _)| *name == "xtask"),
            "no symbol of this crate"
        );
        Ok(())
    }
}
