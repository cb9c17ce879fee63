// Setup failures panic, like the assertions.
#![allow(clippy::unwrap_used)]
//! The built binary: `--help` lists every setting with its environment variable, a bad
//! setting stops the start with one line naming it (exit status 2), LOG_FORMAT=json makes
//! the log lines JSON, and the documented example config parses into a valid `Config`.

use std::{path::PathBuf, process::Output, time::Duration};

use clap::CommandFactory;

const BINARY: &str = env!("CARGO_BIN_EXE_order-svc");
const TOKEN: &str = "order-svc-startup-token-0123456789";

#[path = "../../../tests/shared/binary.rs"]
mod binary;

/// Runs the binary with exactly `env` as its environment.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    binary::run(BINARY, args, env)
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("order-svc-{name}-{}", std::process::id()))
}

#[test]
fn help_lists_every_setting_and_its_environment_variable() {
    let help = binary::help_naming_every_variable(BINARY, &order_svc::config::Args::command());
    assert!(
        help.contains("--config") && help.contains("METRICS_ADDR"),
        "{help}"
    );
}

#[test]
fn help_hides_the_values_of_secret_settings() {
    let password = "pg-s3cret-in-help";
    let url = format!("postgres://orders:{password}@db.internal:5432/orders");
    let output = run(
        &["--help"],
        &[("DATABASE_URL", url.as_str()), ("GRPC_AUTH_TOKEN", TOKEN)],
    );
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("[env: DATABASE_URL"), "{help}");
    assert!(help.contains("[env: GRPC_AUTH_TOKEN"), "{help}");
    assert!(!help.contains(password), "{help}");
    assert!(!help.contains(TOKEN), "{help}");
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
        // A misspelt sslmode would otherwise connect without TLS.
        (
            &[
                token,
                ("DATABASE_URL", "postgres://db/orders?sslmde=require"),
            ],
            "`sslmde`",
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
        binary::assert_refused_naming(&output, setting, &format!("{env:?}"));
    }

    let file = temp_path("bad.toml");
    std::fs::write(&file, "database_uri = \"sqlite::memory:\"\n").unwrap();
    let output = run(&["--config", file.to_str().unwrap()], &[token]);
    let stderr = binary::assert_refused_naming(&output, "`database_uri`", "unknown key");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    std::fs::remove_file(file).unwrap();
}

#[test]
fn log_format_json_makes_json_lines() {
    let database = temp_path("json.db");
    let url = format!("sqlite://{}?mode=rwc", database.display());
    let json = binary::first_log_line(
        BINARY,
        &[
            ("ORDER_SVC_ADDR", "127.0.0.1:0"),
            ("METRICS_ADDR", "off"),
            ("DATABASE_URL", url.as_str()),
            ("GRPC_AUTH_TOKEN", TOKEN),
            ("LOG_FORMAT", "json"),
        ],
        Duration::from_secs(30),
    );
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
    }
    assert!(
        json["level"].is_string() && json["message"].is_string(),
        "{json}"
    );
}

#[test]
fn the_example_config_parses_into_a_valid_config() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/config/order-svc.toml");
    let argv = ["order-svc", "--config", path.to_str().unwrap()].map(std::ffi::OsString::from);
    let mut args: order_svc::config::Args = paynotify::config::load_from(argv, |_| false).unwrap();
    assert_eq!(
        args.database_url.expose(),
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
