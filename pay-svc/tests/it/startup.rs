// Setup failures panic, like the assertions.
#![allow(clippy::unwrap_used)]
//! The built binary: `--help` lists every setting with its environment variable, a bad or
//! missing setting stops the start with one line naming it (exit status 2), LOG_FORMAT=json makes
//! the log lines JSON, and the documented example config parses into a valid `Config`.

use std::{path::PathBuf, process::Output, time::Duration};

use clap::CommandFactory;

const BINARY: &str = env!("CARGO_BIN_EXE_pay-svc");
const TOKEN: &str = "pay-svc-startup-token-0123456789";
/// What pay-svc sends to order-svc (ORDER_SVC_AUTH_TOKEN): never the callers' token.
const ORDER_TOKEN: &str = "pay-svc-startup-order-svc-token-0123456789";
/// The gateway's own (GATEWAY_AUTH_TOKEN): ConfirmPayment only.
const GATEWAY_TOKEN: &str = "pay-svc-startup-gateway-token-0123456789";
/// pay-svc has no built-in merchant: every start is given one.
const MERCHANT: [(&str, &str); 3] = [
    ("WXPAY_APPID", wxpay_sim::DEMO_APPID),
    ("WXPAY_MCH_ID", wxpay_sim::DEMO_MCH_ID),
    ("WXPAY_API_KEY", wxpay_sim::DEMO_API_KEY),
];

#[path = "../../../tests/shared/binary.rs"]
mod binary;

/// Runs the binary with exactly `env` as its environment.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    binary::run(BINARY, args, env)
}

fn temp_file(name: &str, content: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("pay-svc-{name}-{}", std::process::id()));
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn help_lists_every_setting_and_its_environment_variable() {
    let help = binary::help_naming_every_variable(BINARY, &pay_svc::Config::command());
    for setting in [
        "--config",
        "METRICS_ADDR",
        "WXPAY_API_KEY_PREVIOUS_FILE",
        "ORDER_SVC_AUTH_TOKEN",
        "ORDER_SVC_AUTH_TOKEN_FILE",
        "GATEWAY_AUTH_TOKEN",
        "GATEWAY_AUTH_TOKEN_FILE",
    ] {
        assert!(help.contains(setting), "{setting}:\n{help}");
    }
    assert!(
        !help.contains("T6m9iK73b0kn9g5v426MKfHQH7X8rKwb"),
        "the demo key is shown"
    );

    // Tokens in the environment stay out of the help text.
    let output = run(
        &["--help"],
        &[
            ("GRPC_AUTH_TOKEN", TOKEN),
            ("ORDER_SVC_AUTH_TOKEN", ORDER_TOKEN),
            ("GATEWAY_AUTH_TOKEN", GATEWAY_TOKEN),
        ],
    );
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("[env: ORDER_SVC_AUTH_TOKEN"), "{help}");
    assert!(help.contains("[env: GATEWAY_AUTH_TOKEN"), "{help}");
    assert!(
        !help.contains(TOKEN) && !help.contains(ORDER_TOKEN) && !help.contains(GATEWAY_TOKEN),
        "{help}"
    );
}

#[test]
fn bad_settings_stop_the_start_naming_the_setting() {
    let token = ("GRPC_AUTH_TOKEN", TOKEN);
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "GRPC_AUTH_TOKEN"),
        (&[token, ("WXPAY_API_KEY", "short")], "WXPAY_API_KEY"),
        (
            &[token, ("WXPAY_API_KEY_FILE", "/nonexistent/key")],
            "WXPAY_API_KEY_FILE",
        ),
        (
            &[
                token,
                ("WXPAY_API_KEY_PREVIOUS", "T6m9iK73b0kn9g5v426MKfHQH7X8rKwb"),
            ],
            "WXPAY_API_KEY_PREVIOUS",
        ),
        (
            &[token, ("WXPAY_NOTIFY_URL", "http://x/notify?a=1")],
            "WXPAY_NOTIFY_URL",
        ),
        (
            &[token, ("ORDER_SVC_URL", "127.0.0.1:50052")],
            "ORDER_SVC_URL",
        ),
        (&[token, ("METRICS_ADDR", "nowhere")], "--metrics-addr"),
        (
            &[token, ("RECONCILE_QUERIES_PER_SEC", "0")],
            "RECONCILE_QUERIES_PER_SEC",
        ),
    ];
    for (env, setting) in cases {
        // The merchant and order-svc's token first, so that a case's own value wins.
        let env: Vec<_> = MERCHANT
            .iter()
            .chain(&[("ORDER_SVC_AUTH_TOKEN", ORDER_TOKEN)])
            .chain(env.iter())
            .copied()
            .collect();
        let output = run(&[], &env);
        let stderr = binary::assert_refused_naming(&output, setting, &format!("{env:?}"));
        assert!(
            !stderr.contains("T6m9iK73b0kn9g5v426MKfHQH7X8rKwb"),
            "{stderr}"
        );
    }

    let file = temp_file(
        "bad.toml",
        "wxpay_mch_id = \"1473426802\"\nwxpay_app_id = \"x\"\n",
    );
    let output = run(&["--config", file.to_str().unwrap()], &[token]);
    let stderr = binary::assert_refused_naming(&output, "`wxpay_app_id`", "unknown key");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    std::fs::remove_file(file).unwrap();
}

/// The gateway holds GRPC_AUTH_TOKEN; pay-svc must not start sending it on to order-svc,
/// where it would let whoever took the gateway over call MarkPaid directly.
#[test]
fn the_order_svc_token_is_required_and_not_the_callers_token() {
    fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut env = MERCHANT.to_vec();
        env.push(("GRPC_AUTH_TOKEN", TOKEN));
        env.extend_from_slice(extra);
        env
    }
    let missing = run(&[], &with(&[]));
    let stderr = binary::assert_refused_naming(
        &missing,
        "invalid setting ORDER_SVC_AUTH_TOKEN: required",
        "no ORDER_SVC_AUTH_TOKEN",
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let same = run(&[], &with(&[("ORDER_SVC_AUTH_TOKEN", TOKEN)]));
    let stderr = binary::assert_refused_naming(
        &same,
        "invalid setting ORDER_SVC_AUTH_TOKEN: must differ from GRPC_AUTH_TOKEN",
        "the callers' token",
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");

    // The same token through a file is caught too.
    let file = temp_file("same-token", &format!("{TOKEN}\n"));
    let same = run(
        &[],
        &with(&[("ORDER_SVC_AUTH_TOKEN_FILE", file.to_str().unwrap())]),
    );
    binary::assert_refused_naming(&same, "must differ from GRPC_AUTH_TOKEN", "file");
    std::fs::remove_file(file).unwrap();

    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("ORDER_SVC_AUTH_TOKEN", "short")],
            "invalid setting ORDER_SVC_AUTH_TOKEN: must be at least 16 characters",
        ),
        (
            &[("ORDER_SVC_AUTH_TOKEN_FILE", "/nonexistent/token")],
            "ORDER_SVC_AUTH_TOKEN_FILE",
        ),
        // Waiving authentication does not waive order-svc's token while callers need one.
        (
            &[("GRPC_ALLOW_UNAUTHENTICATED", "true")],
            "invalid setting ORDER_SVC_AUTH_TOKEN: required",
        ),
    ];
    for (extra, expected) in cases {
        let output = run(&[], &with(extra));
        let stderr = binary::assert_refused_naming(&output, expected, &format!("{extra:?}"));
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

/// The gateway's own token opens ConfirmPayment only: it must be another token than the one
/// that opens every method and than order-svc's, and means nothing while pay-svc runs open.
#[test]
fn the_gateway_token_is_not_another_services_token() {
    fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut env = MERCHANT.to_vec();
        env.push(("ORDER_SVC_AUTH_TOKEN", ORDER_TOKEN));
        env.extend_from_slice(extra);
        env
    }
    let grpc = ("GRPC_AUTH_TOKEN", TOKEN);
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[grpc, ("GATEWAY_AUTH_TOKEN", TOKEN)],
            "invalid setting GATEWAY_AUTH_TOKEN: must differ from GRPC_AUTH_TOKEN",
        ),
        (
            &[grpc, ("GATEWAY_AUTH_TOKEN", ORDER_TOKEN)],
            "invalid setting GATEWAY_AUTH_TOKEN: must differ from ORDER_SVC_AUTH_TOKEN",
        ),
        (
            &[grpc, ("GATEWAY_AUTH_TOKEN", "short")],
            "invalid setting GATEWAY_AUTH_TOKEN: must be at least 16 characters",
        ),
        (
            &[grpc, ("GATEWAY_AUTH_TOKEN_FILE", "/nonexistent/token")],
            "GATEWAY_AUTH_TOKEN_FILE",
        ),
        (
            &[
                ("GRPC_ALLOW_UNAUTHENTICATED", "true"),
                ("GATEWAY_AUTH_TOKEN", GATEWAY_TOKEN),
            ],
            "invalid setting GATEWAY_AUTH_TOKEN: only with GRPC_AUTH_TOKEN",
        ),
    ];
    for (extra, expected) in cases {
        let output = run(&[], &with(extra));
        let stderr = binary::assert_refused_naming(&output, expected, &format!("{extra:?}"));
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        for token in [TOKEN, ORDER_TOKEN, GATEWAY_TOKEN] {
            assert!(!stderr.contains(token), "{stderr}");
        }
    }

    // The same token through a file is caught too.
    let file = temp_file("same-gateway-token", &format!("{TOKEN}\n"));
    let same = run(
        &[],
        &with(&[grpc, ("GATEWAY_AUTH_TOKEN_FILE", file.to_str().unwrap())]),
    );
    binary::assert_refused_naming(&same, "must differ from GRPC_AUTH_TOKEN", "file");
    std::fs::remove_file(file).unwrap();
}

/// Without GATEWAY_AUTH_TOKEN pay-svc starts as before, but says first thing that the gateway's
/// token opens every method, and how to fix it.
#[test]
fn a_gateway_without_a_token_of_its_own_is_warned_about() {
    let line = binary::first_stdout_line(
        BINARY,
        &[
            ("PAY_SVC_ADDR", "127.0.0.1:0"),
            ("METRICS_ADDR", "off"),
            ("RECONCILE_INTERVAL_SECS", "0"),
            ("GRPC_AUTH_TOKEN", TOKEN),
            ("ORDER_SVC_AUTH_TOKEN", ORDER_TOKEN),
            MERCHANT[0],
            MERCHANT[1],
            MERCHANT[2],
        ],
        Duration::from_secs(20),
    );
    assert!(line.contains("WARN"), "{line:?}");
    assert!(line.contains("auth.gateway_token_unset"), "{line:?}");
    assert!(line.contains("set GATEWAY_AUTH_TOKEN"), "{line:?}");
    assert!(
        !line.contains(TOKEN) && !line.contains(ORDER_TOKEN),
        "{line:?}"
    );
}

#[test]
fn a_missing_merchant_stops_the_start_naming_it() {
    let token = ("GRPC_AUTH_TOKEN", TOKEN);
    let output = run(&[], &[token]);
    let stderr = binary::assert_refused_naming(&output, "WXPAY_APPID", "no merchant");
    assert!(
        stderr.contains("also missing: WXPAY_MCH_ID, WXPAY_API_KEY (or WXPAY_API_KEY_FILE)"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    for (missing, _) in MERCHANT {
        let mut env = vec![token];
        env.extend(MERCHANT.into_iter().filter(|(name, _)| *name != missing));
        let output = run(&[], &env);
        let stderr = binary::assert_refused_naming(
            &output,
            &format!("invalid setting {missing}: required"),
            missing,
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }

    // A misspelled variable is a missing one, not the demo key in its place.
    let output = run(
        &[],
        &[
            token,
            MERCHANT[0],
            MERCHANT[1],
            ("WXPAY_APIKEY", wxpay_sim::DEMO_API_KEY),
        ],
    );
    binary::assert_refused_naming(&output, "WXPAY_API_KEY", "misspelled key");
}

#[test]
fn log_format_json_makes_json_lines() {
    let json = binary::first_log_line(
        BINARY,
        &[
            ("PAY_SVC_ADDR", "127.0.0.1:0"),
            ("METRICS_ADDR", "off"),
            ("RECONCILE_INTERVAL_SECS", "0"),
            ("GRPC_AUTH_TOKEN", TOKEN),
            ("ORDER_SVC_AUTH_TOKEN", ORDER_TOKEN),
            ("GATEWAY_AUTH_TOKEN", GATEWAY_TOKEN),
            ("LOG_FORMAT", "json"),
            MERCHANT[0],
            MERCHANT[1],
            MERCHANT[2],
        ],
        Duration::from_secs(20),
    );
    assert_eq!(json["message"], "pay-svc listening", "{json}");
}

#[test]
fn the_example_config_parses_into_a_valid_config() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/config/pay-svc.toml");
    let args = ["pay-svc", "--config", path.to_str().unwrap()].map(std::ffi::OsString::from);
    let mut config: pay_svc::Config = paynotify::config::load_from(args, |_| false).unwrap();
    assert_eq!(config.addr.to_string(), "127.0.0.1:50051");
    assert_eq!(config.metrics_addr.to_string(), "127.0.0.1:9101");
    assert_eq!(
        config.wxpay_notify_url,
        "https://pay.example.com/wxpay/notify"
    );
    assert_eq!(
        config.wxpay_api_backup_base.as_deref(),
        Some("https://api2.mch.weixin.qq.com")
    );
    assert_eq!(config.reconcile_queries_per_sec, 5.0);
    assert!(config.wxpay_api_key_previous_file.is_none());
    let token_files = [
        &config.grpc_auth_token_file,
        &config.gateway_auth_token_file,
        &config.order_svc_auth_token_file,
    ];
    assert!(
        token_files.iter().all(|file| file.is_some()),
        "{token_files:?}"
    );
    assert!(
        token_files[0] != token_files[1]
            && token_files[1] != token_files[2]
            && token_files[0] != token_files[2],
        "three tokens, three files: {token_files:?}"
    );

    // The secrets come from files; point them at real ones.
    let key = temp_file("key", "0123456789abcdefghijklmnopqrstuv\n");
    let token = temp_file("token", &format!("{TOKEN}\n"));
    let order_token = temp_file("order-token", &format!("{ORDER_TOKEN}\n"));
    let gateway_token = temp_file("gateway-token", &format!("{GATEWAY_TOKEN}\n"));
    config.wxpay_api_key_file = Some(key.clone());
    config.grpc_auth_token_file = Some(token.clone());
    config.order_svc_auth_token_file = Some(order_token.clone());
    config.gateway_auth_token_file = Some(gateway_token.clone());
    let config = config.resolve_secrets().unwrap();
    assert_eq!(config.validate(), Ok(()));
    for file in [key, token, order_token, gateway_token] {
        std::fs::remove_file(file).unwrap();
    }
}
