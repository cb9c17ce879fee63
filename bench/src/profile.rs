//! Optional sampling profiles of the services during a measured phase: `perf record` with the
//! `cpu-clock` software event (it works in VMs without hardware counters) attached to the
//! service processes, stopped with SIGINT when the phase ends. Read a profile with
//! `perf report -i <file> --sort pid,sym` (or `--sort comm,dso,sym` for threads).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::Context;

/// Samples per second and thread.
const FREQUENCY: &str = "999";

/// A running `perf record`; [`Recording::finish`] stops it and waits for the file.
pub struct Recording {
    child: Child,
    pub file: PathBuf,
}

impl Recording {
    /// Starts recording the given processes into `dir/<phase>.perf.data`.
    pub fn start(dir: &Path, phase: &str, pids: &[u32]) -> anyhow::Result<Recording> {
        std::fs::create_dir_all(dir)?;
        let file = dir.join(format!("{}.perf.data", slug(phase)));
        let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
        let child = Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F", FREQUENCY, "-g", "-o"])
            .arg(&file)
            .args(["-p", &pids.join(",")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting perf record (is perf installed?)")?;
        // perf needs a moment to attach before the load starts.
        std::thread::sleep(Duration::from_millis(300));
        Ok(Recording { child, file })
    }

    /// Stops perf with SIGINT (it writes its file on that signal) and waits for it.
    pub fn finish(mut self) -> anyhow::Result<PathBuf> {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .context("signalling perf")?;
        anyhow::ensure!(status.success(), "kill -INT perf failed");
        self.child.wait()?;
        Ok(self.file.clone())
    }
}

/// `e2e: WeChat +200 ms` → `e2e-wechat-200-ms`.
fn slug(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_names_become_file_names() {
        assert_eq!(slug("e2e: WeChat +200 ms"), "e2e-wechat-200-ms");
        assert_eq!(slug("floor: MarkPaid gRPC"), "floor-markpaid-grpc");
    }
}
