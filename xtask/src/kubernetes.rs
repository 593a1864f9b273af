//! `cargo xtask crds` and `cargo xtask k8s-validate`: the Kubernetes
//! manifests under `deploy/kubernetes`.
//!
//! The CRDs are made by `wasmbed-crds` (host/k8s) from the API server's
//! own types; it runs as a program of its own rather than as a library of
//! xtask, so that xtask does not build the API server before it can do
//! anything else. Its staleness test lives beside it
//! (host/k8s/tests/crds.rs); `k8s-validate` checks staleness too.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;

use crate::{cmd, venv};

/// The manifests, relative to the repository root.
pub(crate) const MANIFESTS: &str = "deploy/kubernetes";

/// The generated CRDs, relative to the repository root.
pub(crate) const CRDS: &str = "deploy/kubernetes/crds";

/// The validation script, relative to the repository root.
const VALIDATE: &str = "tests/kubernetes/validate.py";

/// Writes the CRDs into [`CRDS`]; with `check`, writes nothing and fails
/// when a checked-in CRD differs from what would be written.
pub(crate) fn crds(root: &Path, check: bool) -> anyhow::Result<()> {
    let mut command = cmd::cargo(root);
    command.args([
        "run",
        "--quiet",
        "-p",
        "wasmbed-k8s",
        "--bin",
        "wasmbed-crds",
        "--",
    ]);
    if check {
        command.arg("--check");
    }
    command.arg(root.join(CRDS));
    Ok(cmd::run(&mut command)?)
}

/// Checks that the CRDs are up to date, then validates every manifest
/// against Kubernetes' schemas and every example custom resource against
/// its CRD, with the project's Python environment.
pub(crate) fn validate(root: &Path) -> anyhow::Result<()> {
    crds(root, true).context("the checked-in CRDs are stale: run `cargo xtask crds`")?;
    let venv = venv::ensure(root)?;
    cmd::run(
        Command::new(venv.python())
            .current_dir(root)
            .arg(VALIDATE)
            .arg(MANIFESTS),
    )
    .with_context(|| format!("{MANIFESTS} is not valid"))?;
    Ok(())
}
