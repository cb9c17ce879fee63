//! The service binaries under test: built once per test process with the cargo that runs the
//! tests, as `cargo test` at the workspace root builds them (a no-op when that is what is
//! running), and found in the target directory next to the test executable, same profile.
//!
//! `CLUSTER_BIN_DIR` skips the build and uses the binaries in that directory instead, e.g. a
//! release build or binaries installed on another machine.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use anyhow::{Context, bail};

use crate::process::Service;

/// Where the binaries are; built on first use.
pub fn dir() -> anyhow::Result<&'static Path> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| locate_or_build().map_err(|e| format!("{e:#}")))
        .as_deref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The path of one service's binary.
pub fn path(service: Service) -> anyhow::Result<PathBuf> {
    Ok(dir()?.join(service.binary()))
}

fn locate_or_build() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CLUSTER_BIN_DIR") {
        let dir = PathBuf::from(dir);
        check_present(&dir)?;
        return Ok(dir);
    }
    // target/<profile>/deps/it-<hash>: the binaries live in target/<profile>/.
    let exe = std::env::current_exe().context("finding the test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("{} is not in a cargo target directory", exe.display()))?
        .to_path_buf();
    let profile: &[&str] = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => &[],
        Some("release") => &["--release"],
        Some(other) => &["--profile", other],
        None => bail!("unexpected target directory {}", profile_dir.display()),
    };
    let target_dir = profile_dir
        .parent()
        .context("the profile directory has no parent")?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("cluster-tests is not inside the workspace")?;

    // `cargo test --no-run` at the workspace root, not `cargo build -p …`: the binaries then
    // get the feature set `cargo test` resolves for the whole workspace, so in a `cargo test`
    // run (CI's) this is a no-op instead of a second build of the dependency tree.
    let mut command = Command::new(env!("CARGO"));
    command
        .current_dir(workspace)
        .args(["test", "--no-run", "--quiet"])
        .args(profile)
        .arg("--target-dir")
        .arg(target_dir);
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "building the service binaries failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    check_present(&profile_dir)?;
    Ok(profile_dir)
}

fn check_present(dir: &Path) -> anyhow::Result<()> {
    for service in Service::ALL {
        let path = dir.join(service.binary());
        if !path.is_file() {
            bail!("{} is missing", path.display());
        }
    }
    Ok(())
}
