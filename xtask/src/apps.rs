//! `cargo xtask apps`: the sample WebAssembly applications, as the tests
//! against real firmware deploy them, in `target/apps/<name>.wasm`:
//!
//! * `apps/primes` (Rust, a workspace of its own for
//!   `wasm32-unknown-unknown`), built in release mode, as `primes.wasm`;
//! * every `apps/wat/<name>.wat`, compiled with the `wat` crate, as
//!   `<name>.wasm`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::cmd;
use crate::cross::Project;

/// The Rust application.
pub(crate) const PRIMES: Project = Project {
    dir: "apps/primes",
    target: "wasm32-unknown-unknown",
};

/// What the primes build produces, in its release directory.
const PRIMES_ARTIFACT: &str = "wasmbed_app_primes.wasm";

/// The WAT sources, relative to the repository root.
const WAT_DIR: &str = "apps/wat";

/// The output directory: `apps` in the root workspace's target directory.
pub(crate) fn out_dir(root: &Path) -> anyhow::Result<PathBuf> {
    Ok(cmd::target_dir(root)?.join("apps"))
}

/// `cargo xtask apps [--check]`: with `check`, `cargo fmt --check` and
/// clippy on the Rust application first.
pub(crate) fn run(root: &Path, check: bool) -> anyhow::Result<()> {
    if check {
        PRIMES.fmt_check(root)?;
        PRIMES.clippy(root)?;
    }
    build(root)
}

/// Builds every application into [`out_dir`] and lists them with their sizes.
pub(crate) fn build(root: &Path) -> anyhow::Result<()> {
    let out = out_dir(root)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    PRIMES.build(root)?;
    let built = PRIMES.release_dir(root)?.join(PRIMES_ARTIFACT);
    let mut outputs = vec![out.join("primes.wasm")];
    std::fs::copy(&built, &outputs[0])
        .with_context(|| format!("copying {} to {}", built.display(), outputs[0].display()))?;

    let wat_dir = root.join(WAT_DIR);
    let sources = wat_sources(&wat_dir)?;
    if let Some(name) = clash(&sources, "primes") {
        bail!("{WAT_DIR}/{name}.wat would overwrite another application's {name}.wasm");
    }
    for (name, source) in &sources {
        let wasm =
            wat::parse_file(source).with_context(|| format!("compiling {}", source.display()))?;
        let path = out.join(format!("{name}.wasm"));
        std::fs::write(&path, wasm).with_context(|| format!("writing {}", path.display()))?;
        outputs.push(path);
    }

    for path in &outputs {
        let size = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        println!("xtask: {:>8} B  {}", size, cmd::show(root, path));
    }
    Ok(())
}

/// The `.wat` files in `dir`, as (name without extension, path), by name.
fn wat_sources(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut sources = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|ext| ext == "wat") && path.is_file() {
            let name = path
                .file_stem()
                .and_then(|stem| stem.to_str())
                .with_context(|| format!("{} has no UTF-8 name", path.display()))?
                .to_owned();
            sources.push((name, path));
        }
    }
    sources.sort();
    Ok(sources)
}

/// A WAT source whose output name is `taken`, if any.
fn clash<'a>(sources: &'a [(String, PathBuf)], taken: &str) -> Option<&'a str> {
    sources
        .iter()
        .map(|(name, _)| name.as_str())
        .find(|name| *name == taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_wat_sources_by_name() -> anyhow::Result<()> {
        let sources = wat_sources(&crate::workspace_root().join(WAT_DIR))?;
        let names: Vec<&str> = sources.iter().map(|(name, _)| name.as_str()).collect();
        assert!(names.contains(&"fib"), "{names:?}");
        assert!(names.is_sorted(), "{names:?}");
        assert_eq!(clash(&sources, "primes"), None);
        assert_eq!(clash(&sources, "fib"), Some("fib"));
        Ok(())
    }

    #[test]
    fn every_wat_source_compiles() -> anyhow::Result<()> {
        for (name, source) in wat_sources(&crate::workspace_root().join(WAT_DIR))? {
            let wasm = wat::parse_file(&source).with_context(|| name.clone())?;
            assert!(wasm.starts_with(b"\0asm"), "{name}");
        }
        Ok(())
    }
}
