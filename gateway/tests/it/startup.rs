//! The built binary: `--help` lists every setting with its environment variable, a bad
//! setting stops the start with one line naming it (exit status 2), LOG_FORMAT=json makes
//! the log lines JSON, and the documented example config parses into a valid `Config`.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, Output, Stdio},
    time::Duration,
};

use clap::CommandFactory;

const BINARY: &str = env!("CARGO_BIN_EXE_gateway");
const TOKEN: &str = "gateway-startup-token-0123456789";

/// Runs the binary with exactly `env` as its environment.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BINARY)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/config/gateway.toml")
}

#[test]
fn help_lists_every_setting_and_its_environment_variable() {
    let output = run(&["--help"], &[]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for arg in gateway::Config::command().get_arguments() {
        if let Some(env) = arg.get_env() {
            let env = env.to_str().unwrap();
            assert!(
                help.contains(&format!("[env: {env}")),
                "{env} missing:\n{help}"
            );
        }
    }
    assert!(help.contains("--config"), "{help}");
}

#[test]
fn bad_settings_stop_the_start_naming_the_setting() {
    let token = ("GRPC_AUTH_TOKEN", TOKEN);
    // (environment, arguments, the setting the error must name)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: &[Case] = &[
        (
            &[token, ("GATEWAY_UPSTREAM_TIMEOUT_MS", "0")],
            &[],
            "GATEWAY_UPSTREAM_TIMEOUT_MS",
        ),
        (
            &[token, ("GATEWAY_UPSTREAM_TIMEOUT_MS", "6000")],
            &[],
            "GATEWAY_UPSTREAM_TIMEOUT_MS",
        ),
        (
            &[token, ("PAY_SVC_URL", "127.0.0.1:50051")],
            &[],
            "PAY_SVC_URL",
        ),
        (&[], &[], "GRPC_AUTH_TOKEN"),
        (
            &[("GRPC_AUTH_TOKEN_FILE", "/nonexistent/token")],
            &[],
            "GRPC_AUTH_TOKEN_FILE",
        ),
        (&[token], &["--addr", "not-an-address"], "--addr"),
        (
            &[token],
            &["--config", "/nonexistent/gateway.toml"],
            "--config",
        ),
    ];
    for (env, args, setting) in cases {
        let output = run(args, env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{env:?} {args:?}: {stderr}");
        assert!(stderr.contains(setting), "{env:?} {args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
    }

    let file = std::env::temp_dir().join(format!("gateway-bad-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "gateway_addr = \"127.0.0.1:0\"\nupstream_timout_ms = 100\n",
    )
    .unwrap();
    let output = run(&["--config", file.to_str().unwrap()], &[token]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("`upstream_timout_ms`"), "{stderr}");
    std::fs::remove_file(file).unwrap();
}

#[test]
fn log_format_json_makes_json_lines() {
    let mut child = Command::new(BINARY)
        .env_clear()
        .envs([
            ("GATEWAY_ADDR", "127.0.0.1:0"),
            ("GRPC_AUTH_TOKEN", TOKEN),
            ("LOG_FORMAT", "json"),
        ])
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
    let line = line_rx.recv_timeout(Duration::from_secs(20));
    child.kill().unwrap();
    child.wait().unwrap();
    let line = line.expect("no log line within 20 s");
    let json: serde_json::Value = serde_json::from_str(&line).expect(&line);
    assert_eq!(json["level"], "INFO", "{line}");
    assert_eq!(json["message"], "gateway listening", "{line}");
}

#[test]
fn the_example_config_parses_into_a_valid_config() {
    let path = example();
    let args = ["gateway", "--config", path.to_str().unwrap()].map(std::ffi::OsString::from);
    let mut config: gateway::Config = paynotify::config::load_from(args, |_| false).unwrap();
    assert_eq!(config.addr.to_string(), "127.0.0.1:9010");
    assert_eq!(config.upstream_timeout_ms, 4000);
    assert_eq!(config.log_format, paynotify::runtime::LogFormat::Json);
    assert_eq!(
        config.grpc_auth_token_file.as_deref(),
        Some(std::path::Path::new(
            "/run/secrets/paynotify/grpc-auth-token"
        ))
    );

    let token = std::env::temp_dir().join(format!("gateway-example-{}", std::process::id()));
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    config.grpc_auth_token_file = Some(token.clone());
    let config = config.resolve_secrets().unwrap();
    assert_eq!(config.validate(), Ok(()));
    std::fs::remove_file(token).unwrap();
}
