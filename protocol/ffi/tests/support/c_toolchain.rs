//! Building C test programs against a Rust static library: shared by the
//! C-ABI tests of `wasmbed-protocol-ffi` and `wasmbed-agent-ffi` (the
//! latter includes this file by path).

use std::path::PathBuf;
use std::time::SystemTime;

/// Libraries the Rust standard library in a hosted static library needs
/// (`rustc --print native-static-libs` on Linux).
pub(crate) const NATIVE_LIBS: &[&str] = &[
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

/// The compiler, if installed: `gcc` on `PATH`.
pub(crate) fn gcc() -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join("gcc"))
        .find(|path| path.is_file())
}

/// The static library `lib<name>*.a` cargo built with this test.
///
/// Cargo builds the library's `staticlib` next to the `rlib` the test
/// links, in the `deps` directory beside the test executable (under `cargo
/// test` and `cargo nextest` alike), but copies it up to the profile
/// directory only when the library itself is what was asked for. The
/// newest copy in either place was built from the current sources: whatever
/// build made this test rebuilt the library first if it had changed.
pub(crate) fn static_lib(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("the test executable's directory");
    let prefix = format!("lib{name}");
    let mut candidates: Vec<(SystemTime, PathBuf)> = Vec::new();
    for dir in [Some(deps), deps.parent()].into_iter().flatten() {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            if file.starts_with(&prefix) && file.ends_with(".a") {
                if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                    candidates.push((modified, entry.path()));
                }
            }
        }
    }
    candidates
        .into_iter()
        .max()
        .map(|(_, path)| path)
        .unwrap_or_else(|| {
            panic!(
                "no {prefix}*.a in {} or its parent: run `cargo build -p {}`",
                deps.display(),
                name.replace('_', "-")
            )
        })
}
