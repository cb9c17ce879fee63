//! The built binary: `--help` documents the developer CLI and lists every server setting
//! with its environment variable, a bad setting stops the start with one line naming it
//! (exit status 2), LOG_FORMAT=json makes the log lines JSON, the key can come from a file,
//! and the documented example config parses into a valid `Config`.

use std::{path::PathBuf, process::Output, time::Duration};

use clap::CommandFactory;
use wxpay_sim::cli::{Action, Cli};

const BINARY: &str = env!("CARGO_BIN_EXE_wxpay-sim");

#[path = "../../../tests/shared/binary.rs"]
mod binary;

/// Runs the binary with exactly `env` as its environment.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    binary::run(BINARY, args, env)
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("wxpay-sim-{name}-{}", std::process::id()))
}

#[test]
fn help_documents_the_cli_and_every_setting() {
    let help = binary::help_naming_every_variable(BINARY, &Cli::command());
    for command in [
        "serve",
        "pay",
        "trade-state",
        "attempts",
        "replay",
        "stats",
        "notify",
    ] {
        assert!(help.contains(&format!("  {command}")), "{command}:\n{help}");
    }
    assert!(help.contains("wxpay-sim notify --url"), "{help}");
    let notify = String::from_utf8(run(&["notify", "--help"], &[]).stdout).unwrap();
    for flag in [
        "--url",
        "--out-trade-no",
        "--total-fee",
        "--sign-type",
        "WXPAY_API_KEY_FILE",
    ] {
        assert!(notify.contains(flag), "{flag}:\n{notify}");
    }
    let pay = String::from_utf8(run(&["pay", "--help"], &[]).stdout).unwrap();
    assert!(
        pay.contains("--transaction-id") && pay.contains("--coupon-fee") && pay.contains("SIM_URL"),
        "{pay}"
    );
}

#[test]
fn bad_settings_stop_the_start_naming_the_setting() {
    // (environment, arguments, the setting the error must name)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: &[Case] = &[
        (&[("SIM_TIME_SCALE", "0")], &[], "SIM_TIME_SCALE"),
        (
            &[("SIM_REPLY_DEADLINE_MS", "0")],
            &[],
            "SIM_REPLY_DEADLINE_MS",
        ),
        (&[], &["--mch-id", ""], "WXPAY_MCH_ID"),
        (
            &[("WXPAY_API_KEY_FILE", "/nonexistent/key")],
            &[],
            "WXPAY_API_KEY_FILE",
        ),
        (&[("SIM_NOTIFY_DROP_RATIO", "2")], &[], "notify_drop_ratio"),
        (&[("SIM_ADDR", "nowhere")], &["serve"], "--addr"),
    ];
    for (env, args, setting) in cases {
        let output = run(args, env);
        binary::assert_refused_naming(&output, setting, &format!("{env:?} {args:?}"));
    }

    let file = temp_path("bad.toml");
    std::fs::write(&file, "sim_time_scael = 0.5\n").unwrap();
    for args in [
        &["--config", file.to_str().unwrap()][..],
        &["serve", "--config", file.to_str().unwrap()][..],
    ] {
        let output = run(args, &[]);
        let stderr = binary::assert_refused_naming(&output, "`sim_time_scael`", "unknown key");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    std::fs::remove_file(file).unwrap();
}

#[test]
fn log_format_json_makes_json_lines() {
    let json = binary::first_log_line(
        BINARY,
        &[("SIM_ADDR", "127.0.0.1:0"), ("LOG_FORMAT", "json")],
        Duration::from_secs(20),
    );
    assert_eq!(json["message"], "wxpay-sim listening", "{json}");
}

#[test]
fn the_example_config_parses_into_a_valid_config() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/config/wxpay-sim.toml");
    let args = ["wxpay-sim", "--config", path.to_str().unwrap()].map(std::ffi::OsString::from);
    let config = match wxpay_sim::cli::load_from(args.to_vec(), |_| false)
        .unwrap()
        .action()
    {
        Action::Serve(config) => config,
        other => panic!("{other:?}"),
    };
    assert_eq!(config.addr.to_string(), "127.0.0.1:9020");
    assert_eq!(config.time_scale, 0.01);
    assert_eq!(config.seed, Some(42));
    assert_eq!(config.merchant.mch_id, "1473426802");
    assert_eq!(config.validate(), Ok(()));
}

#[test]
fn the_key_can_come_from_a_file() {
    let key = temp_path("key");
    std::fs::write(&key, "0123456789abcdefghijklmnopqrstuv\n").unwrap();
    let mut config = wxpay_sim::Config::default();
    config.merchant.api_key_file = Some(key.clone());
    let config = config.resolve_secrets().unwrap();
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("0123456789abcdefghijklmnopqrstuv"),
        "{shown}"
    );
    assert_eq!(config.validate(), Ok(()));
    std::fs::remove_file(key).unwrap();
}
