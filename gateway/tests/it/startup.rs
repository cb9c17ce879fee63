//! The built binary: `--help` lists every setting with its environment variable, a bad
//! setting stops the start with one line naming it (exit status 2), LOG_FORMAT=json makes
//! the log lines JSON, and the documented example config parses into a valid `Config`.

use std::{path::PathBuf, process::Output, time::Duration};

use clap::CommandFactory;

const BINARY: &str = env!("CARGO_BIN_EXE_gateway");
const TOKEN: &str = "gateway-startup-token-0123456789";

#[path = "../../../tests/shared/binary.rs"]
mod binary;

/// Runs the binary with exactly `env` as its environment.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    binary::run(BINARY, args, env)
}

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/config/gateway.toml")
}

#[test]
fn help_lists_every_setting_and_its_environment_variable() {
    let help = binary::help_naming_every_variable(BINARY, &gateway::Config::command());
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
        binary::assert_refused_naming(&output, setting, &format!("{env:?} {args:?}"));
    }

    let file = std::env::temp_dir().join(format!("gateway-bad-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "gateway_addr = \"127.0.0.1:0\"\nupstream_timout_ms = 100\n",
    )
    .unwrap();
    let output = run(&["--config", file.to_str().unwrap()], &[token]);
    let stderr = binary::assert_refused_naming(&output, "`upstream_timout_ms`", "unknown key");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    std::fs::remove_file(file).unwrap();
}

#[test]
fn log_format_json_makes_json_lines() {
    let json = binary::first_log_line(
        BINARY,
        &[
            ("GATEWAY_ADDR", "127.0.0.1:0"),
            ("GRPC_AUTH_TOKEN", TOKEN),
            ("LOG_FORMAT", "json"),
        ],
        Duration::from_secs(20),
    );
    assert_eq!(json["level"], "INFO", "{json}");
    assert_eq!(json["message"], "gateway listening", "{json}");
}

/// Text logs written to a pipe or file carry no colour codes, so `grep addr=…` finds them.
#[test]
fn text_logs_to_a_pipe_are_plain_text() {
    let line = binary::first_stdout_line(
        BINARY,
        &[("GATEWAY_ADDR", "127.0.0.1:0"), ("GRPC_AUTH_TOKEN", TOKEN)],
        Duration::from_secs(20),
    );
    assert!(line.contains("gateway listening"), "{line:?}");
    assert!(!line.contains('\x1b'), "escape codes in {line:?}");
    assert!(line.contains(" addr=127.0.0.1:"), "{line:?}");
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
            "/run/secrets/paynotify/gateway-auth-token"
        ))
    );

    let token = std::env::temp_dir().join(format!("gateway-example-{}", std::process::id()));
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    config.grpc_auth_token_file = Some(token.clone());
    let config = config.resolve_secrets().unwrap();
    assert_eq!(config.validate(), Ok(()));
    std::fs::remove_file(token).unwrap();
}

#[test]
fn a_token_sent_in_cleartext_to_another_host_is_warned_about() {
    let line = binary::first_stdout_line(
        BINARY,
        &[
            ("GATEWAY_ADDR", "127.0.0.1:0"),
            ("GRPC_AUTH_TOKEN", TOKEN),
            (
                "PAY_SVC_URL",
                "http://127.0.0.1:50051,http://pay-svc.internal:50051",
            ),
        ],
        Duration::from_secs(20),
    );
    assert!(line.contains("WARN"), "{line:?}");
    assert!(line.contains("grpc.token_in_cleartext"), "{line:?}");
    assert!(line.contains("http://pay-svc.internal:50051"), "{line:?}");
    assert!(!line.contains("127.0.0.1:50051"), "{line:?}");
    assert!(!line.contains(TOKEN), "{line:?}");
}

#[tokio::test]
async fn the_token_file_is_read_once_the_token_checked_is_the_token_sent() {
    let token = std::env::temp_dir().join(format!("gateway-read-once-{}", std::process::id()));
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let mut config = gateway::Config::for_pay_svc("http://127.0.0.1:50051");
    config.grpc_auth_token_file = Some(token.clone());

    // A config whose file was never read is refused rather than served without its token.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let unresolved = gateway::serve_on(listener, config.clone()).err().unwrap();
    assert!(
        unresolved.to_string().contains("resolve_secrets"),
        "{unresolved}"
    );

    let config = config.resolve_secrets().unwrap();
    assert_eq!(config.validate(), Ok(()));
    // What the file holds after the check no longer matters: it is not read again.
    std::fs::remove_file(&token).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    assert!(gateway::serve_on(listener, config).is_ok());
}
