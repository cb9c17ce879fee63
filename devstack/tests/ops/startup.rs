//! The devstack binary's settings: `--help` lists them with their environment variables, and
//! a bad one stops the start with one line naming it (exit status 2) before any port is bound.

use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_devstack");

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BINARY)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn help_lists_every_setting_and_its_environment_variable() {
    let output = run(&["--help"], &[]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for env in [
        "WXPAY_APPID",
        "WXPAY_MCH_ID",
        "WXPAY_API_KEY",
        "WXPAY_API_KEY_FILE",
        "WXPAY_API_BASE",
        "WXPAY_NOTIFY_URL",
        "DATABASE_URL",
        "GRPC_AUTH_TOKEN",
        "GRPC_AUTH_TOKEN_FILE",
        "GATEWAY_AUTH_TOKEN",
        "GATEWAY_AUTH_TOKEN_FILE",
        "ORDER_SVC_AUTH_TOKEN",
        "ORDER_SVC_AUTH_TOKEN_FILE",
        "SIM_TIME_SCALE",
        "LOG_FORMAT",
        "CONFIG_FILE",
    ] {
        assert!(
            help.contains(&format!("[env: {env}")),
            "{env} missing:\n{help}"
        );
    }
    assert!(
        help.contains("--no-demo") && help.contains("9101"),
        "{help}"
    );
    assert!(!help.contains(wxpay_sim::config::DEMO_API_KEY), "{help}");
}

#[test]
fn help_hides_the_database_password() {
    let url = "postgres://orders:pw-s3cret@db.internal/orders";
    let output = run(&["--help"], &[("DATABASE_URL", url)]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("[env: DATABASE_URL"), "{help}");
    assert!(!help.contains("pw-s3cret"), "{help}");
}

#[test]
fn bad_settings_stop_the_start_naming_the_setting() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("SIM_TIME_SCALE", "0")], "SIM_TIME_SCALE"),
        (&[("WXPAY_API_KEY", "short")], "WXPAY_API_KEY"),
        (
            &[("WXPAY_API_KEY_FILE", "/nonexistent/key")],
            "WXPAY_API_KEY_FILE",
        ),
        (&[("GRPC_AUTH_TOKEN", "short")], "GRPC_AUTH_TOKEN"),
        (&[("ORDER_SVC_AUTH_TOKEN", "short")], "ORDER_SVC_AUTH_TOKEN"),
        (
            &[("ORDER_SVC_AUTH_TOKEN_FILE", "/nonexistent/token")],
            "ORDER_SVC_AUTH_TOKEN_FILE",
        ),
        // The gateway's token must not open order-svc.
        (
            &[("ORDER_SVC_AUTH_TOKEN", devstack::DEMO_GRPC_TOKEN)],
            "invalid setting ORDER_SVC_AUTH_TOKEN: must differ from GRPC_AUTH_TOKEN",
        ),
        (
            &[("GRPC_AUTH_TOKEN", devstack::DEMO_ORDER_SVC_TOKEN)],
            "invalid setting ORDER_SVC_AUTH_TOKEN: must differ from GRPC_AUTH_TOKEN",
        ),
        (&[("GATEWAY_AUTH_TOKEN", "short")], "GATEWAY_AUTH_TOKEN"),
        (
            &[("GATEWAY_AUTH_TOKEN_FILE", "/nonexistent/token")],
            "GATEWAY_AUTH_TOKEN_FILE",
        ),
        // The gateway's token opens ConfirmPayment only, and nothing of order-svc.
        (
            &[("GATEWAY_AUTH_TOKEN", devstack::DEMO_GRPC_TOKEN)],
            "invalid setting GATEWAY_AUTH_TOKEN: must differ from GRPC_AUTH_TOKEN",
        ),
        (
            &[("GRPC_AUTH_TOKEN", devstack::DEMO_GATEWAY_TOKEN)],
            "invalid setting GATEWAY_AUTH_TOKEN: must differ from GRPC_AUTH_TOKEN",
        ),
        (
            &[("GATEWAY_AUTH_TOKEN", devstack::DEMO_ORDER_SVC_TOKEN)],
            "invalid setting GATEWAY_AUTH_TOKEN: must differ from ORDER_SVC_AUTH_TOKEN",
        ),
        (&[("DATABASE_URL", "oracle://db")], "DATABASE_URL"),
        (
            &[("WXPAY_NOTIFY_URL", "pay.example.com/notify")],
            "WXPAY_NOTIFY_URL",
        ),
    ];
    for (env, setting) in cases {
        let output = run(&["--no-demo"], env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{env:?}: {stderr}");
        assert!(stderr.contains(setting), "{env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }

    let file = std::env::temp_dir().join(format!("devstack-bad-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "sim_time_scale = 0.01\ndatabase = \"sqlite::memory:\"\n",
    )
    .unwrap();
    let output = run(&["--no-demo", "--config", file.to_str().unwrap()], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`database`"), "{stderr}");
    std::fs::remove_file(file).unwrap();
}
