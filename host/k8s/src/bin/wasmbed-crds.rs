//! Writes Wasmbed's CRDs as YAML files into a directory (`cargo xtask crds`
//! runs it with `deploy/kubernetes/crds`), or with `--check` fails when a
//! file there differs from what it would write.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).collect::<Vec<_>>();
    let check = args.first().is_some_and(|arg| arg == "--check");
    if check {
        args.remove(0);
    }
    let [dir] = args.as_slice() else {
        eprintln!("usage: wasmbed-crds [--check] DIR");
        return ExitCode::from(2);
    };
    let dir = PathBuf::from(dir);
    let files = match wasmbed_k8s::crd_files() {
        Ok(files) => files,
        Err(err) => {
            eprintln!("wasmbed-crds: rendering the CRDs as YAML: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut stale = false;
    for (name, text) in files {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
            eprintln!("wasmbed-crds: {} is up to date", path.display());
        } else if check {
            eprintln!("wasmbed-crds: {} is stale", path.display());
            stale = true;
        } else if let Err(err) = std::fs::write(&path, text) {
            eprintln!("wasmbed-crds: writing {}: {err}", path.display());
            return ExitCode::FAILURE;
        } else {
            eprintln!("wasmbed-crds: wrote {}", path.display());
        }
    }
    if stale {
        eprintln!("wasmbed-crds: run `cargo xtask crds` and commit the result");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
