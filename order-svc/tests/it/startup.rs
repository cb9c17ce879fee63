// Setup failures panic, like the assertions.
#![allow(clippy::unwrap_used)]
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

const BINARY: &str = env!("CARGO_BIN_EXE_order-svc");
const TOKEN: &str = "order-svc-startup-token-0123456789";

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BINARY)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("order-svc-{name}-{}", std::process::id()))
}

#[test]
fn help_lists_every_setting_and_its_environment_variable() {
    let output = run(&["--help"], &[]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for arg in order_svc::config::Args::command().get_arguments() {
        if let Some(env) = arg.get_env() {
            let env = env.to_str().unwrap();
            assert!(
                help.contains(&format!("[env: {env}")),
                "{env} missing:\n{help}"
            );
        }
    }
    assert!(
        help.contains("--config") && help.contains("METRICS_ADDR"),
        "{help}"
    );
}

#[test]
fn bad_settings_stop_the_start_naming_the_setting() {
    let token = ("GRPC_AUTH_TOKEN", TOKEN);
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "GRPC_AUTH_TOKEN"),
        (&[("GRPC_AUTH_TOKEN", "short")], "GRPC_AUTH_TOKEN"),
        (
            &[("GRPC_AUTH_TOKEN_FILE", "/nonexistent/token")],
            "GRPC_AUTH_TOKEN_FILE",
        ),
        (
            &[token, ("DATABASE_URL", "oracle://db/orders")],
            "DATABASE_URL",
        ),
        (&[token, ("DB_MAX_CONNECTIONS", "0")], "DB_MAX_CONNECTIONS"),
        (
            &[token, ("DB_ACQUIRE_TIMEOUT_MS", "0")],
            "DB_ACQUIRE_TIMEOUT_MS",
        ),
        (&[token, ("DB_MIGRATE", "maybe")], "--db-migrate"),
        (&[token, ("METRICS_ADDR", "nowhere")], "--metrics-addr"),
    ];
    for (env, setting) in cases {
        let output = run(&[], env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{env:?}: {stderr}");
        assert!(stderr.contains(setting), "{env:?}: {stderr}");
    }

    let file = temp_path("bad.toml");
    std::fs::write(&file, "database_uri = \"sqlite::memory:\"\n").unwrap();
    let output = run(&["--config", file.to_str().unwrap()], &[token]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("`database_uri`"), "{stderr}");
    std::fs::remove_file(file).unwrap();
}

#[test]
fn log_format_json_makes_json_lines() {
    let database = temp_path("json.db");
    let url = format!("sqlite://{}?mode=rwc", database.display());
    let mut child = Command::new(BINARY)
        .env_clear()
        .envs([
            ("ORDER_SVC_ADDR", "127.0.0.1:0"),
            ("METRICS_ADDR", "off"),
            ("DATABASE_URL", url.as_str()),
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
    let line = line_rx.recv_timeout(Duration::from_secs(30));
    child.kill().unwrap();
    child.wait().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
    }
    let line = line.expect("no log line within 30 s");
    let json: serde_json::Value = serde_json::from_str(&line).expect(&line);
    assert!(
        json["level"].is_string() && json["message"].is_string(),
        "{line}"
    );
}

#[test]
fn the_example_config_parses_into_a_valid_config() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/config/order-svc.toml");
    let argv = ["order-svc", "--config", path.to_str().unwrap()].map(std::ffi::OsString::from);
    let mut args: order_svc::config::Args = paynotify::config::load_from(argv, |_| false).unwrap();
    assert_eq!(
        args.database_url,
        "postgres://orders@db.internal:5432/orders"
    );
    assert_eq!(args.metrics_addr.to_string(), "127.0.0.1:9102");
    assert!(args.db_migrate);

    let token = temp_path("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    args.grpc_auth_token_file = Some(token.clone());
    let config = order_svc::Config::try_from(args).unwrap();
    assert_eq!(config.listen_addr.to_string(), "127.0.0.1:50052");
    assert_eq!(config.max_connections, 10);
    assert_eq!(config.backend(), sea_orm::DbBackend::Postgres);
    std::fs::remove_file(token).unwrap();
}
