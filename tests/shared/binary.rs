//! How every binary of the workspace must start, checked the same way for each: `--help`
//! names every setting's environment variable, a bad setting stops the start with exit
//! status 2 and an `error: ` naming it, and LOG_FORMAT=json makes the log lines JSON.
//! Each crate's `tests/it/startup.rs` includes this file with `#[path]` and adds its own
//! cases.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Output, Stdio},
    time::Duration,
};

/// Runs `binary` with exactly `env` as its environment, to completion.
pub fn run(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(binary)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// `binary --help` succeeds and shows `[env: NAME` for every argument of `command` that has
/// one; returns the help text for further checks.
pub fn help_naming_every_variable(binary: &str, command: &clap::Command) -> String {
    let output = run(binary, &["--help"], &[]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for arg in command.get_arguments() {
        if let Some(env) = arg.get_env() {
            let env = env.to_str().unwrap();
            assert!(
                help.contains(&format!("[env: {env}")),
                "{env} missing:\n{help}"
            );
        }
    }
    help
}

/// The start was refused the way a bad setting must be: exit status 2 and stderr starting
/// `error: …` and naming `setting`. Returns stderr for further checks.
pub fn assert_refused_naming(output: &Output, setting: &str, case: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{case}: {stderr}");
    assert!(stderr.starts_with("error: "), "{case}: {stderr}");
    assert!(stderr.contains(setting), "{case}: {stderr}");
    stderr
}

/// Starts `binary` with exactly `env`, waits up to `within` for its first line on stdout
/// (a pipe, as under a log collector), stops it, and returns that line.
pub fn first_stdout_line(binary: &str, env: &[(&str, &str)], within: Duration) -> String {
    let mut child = Command::new(binary)
        .env_clear()
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = line_tx.send(line);
    });
    let line = line_rx.recv_timeout(within);
    child.kill().unwrap();
    child.wait().unwrap();
    line.unwrap_or_else(|_| panic!("no log line within {within:?}"))
}

/// [`first_stdout_line`], parsed as JSON.
pub fn first_log_line(binary: &str, env: &[(&str, &str)], within: Duration) -> serde_json::Value {
    let line = first_stdout_line(binary, env, within);
    serde_json::from_str(&line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"))
}
