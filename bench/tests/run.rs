//! The load tool end to end, at a small size: the real service binaries (built as `cargo test`
//! builds them, found by cluster-tests' harness), every phase of the first and duplicates
//! scenarios, the CPU breakdown, and the database check. The figures of a debug build mean
//! nothing; what is tested is that the tool runs every phase, every request succeeds, and it
//! reports what the issue asks for.

#![allow(clippy::unwrap_used)]

use std::{net::TcpListener, process::Command};

use serde_json::Value;

#[test]
fn a_small_run_measures_every_phase_and_checks_the_database() {
    let bin_dir = cluster_tests::binaries::dir().unwrap();
    let report_dir = tempfile::tempdir().unwrap();
    let json = report_dir.path().join("perf.json");
    // The services' default metrics ports taken, as when devstack runs beside the tool: the
    // tool gives its services free ones. (Already taken by something else is as good.)
    let _default_metrics_ports = [9101, 9102].map(|port| TcpListener::bind(("127.0.0.1", port)));

    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--scenario", "first,duplicates", "--orders", "200"])
        .args(["--warmup", "20", "--concurrency", "8", "--rounds", "2"])
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--json")
        .arg(&json)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("every order paid exactly once"), "{stdout}");

    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["failures"], Value::Array(Vec::new()), "{report:#}");

    let phases = report["phases"].as_array().unwrap();
    let names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "floor: bare HTTP ack",
            "floor: GetOrder gRPC",
            "floor: bare gRPC (health Check)",
            "floor: MarkPaid gRPC",
            "e2e: first notifications",
            "floor: MarkPaid gRPC (after)",
            "e2e: first notifications (round 2)",
            "floor: MarkPaid gRPC (after round 2)",
            "e2e: duplicates (paid)",
        ]
    );
    for phase in phases {
        // The cheap floors repeat their requests ten times, so they last long enough to read.
        let name = phase["name"].as_str().unwrap();
        let cheap = [
            "floor: bare HTTP ack",
            "floor: GetOrder gRPC",
            "floor: bare gRPC (health Check)",
        ];
        let requests = if cheap.contains(&name) { 2000 } else { 200 };
        assert_eq!(phase["requests"], requests, "{phase:#}");
        assert_eq!(phase["failed"], 0, "{phase:#}");
        assert!(
            phase["throughput_per_s"].as_f64().unwrap() > 0.0,
            "{phase:#}"
        );
    }
    let phase = |name: &str| phases.iter().find(|p| p["name"] == name).unwrap();
    // Every first notification was confirmed with WeChat once; no duplicate was.
    assert_eq!(phase("e2e: first notifications")["orderquery_calls"], 200);
    assert_eq!(
        phase("e2e: first notifications (round 2)")["orderquery_calls"],
        200
    );
    assert_eq!(phase("e2e: duplicates (paid)")["orderquery_calls"], 0);
    // The services' CPU is read: the pipeline phase used all four of them.
    let cpu = &phase("e2e: first notifications")["cpu_us_per_request"];
    for service in ["gateway", "pay-svc", "order-svc", "wxpay-sim"] {
        assert!(cpu[service].as_f64().unwrap() > 0.0, "{service}: {cpu:#}");
    }

    // Where the time went, from the services' metrics: every notification passed through
    // ConfirmPayment, MarkPaid and GetOrder once, and the writer grouped the payments.
    let stages = &phase("e2e: first notifications")["stages"];
    for (part, calls) in [
        ("pay_svc_confirm_payment", 200),
        ("order_svc_mark_paid", 200),
        ("order_svc_get_order", 200),
        ("pay_svc_orderquery", 200),
    ] {
        assert_eq!(
            stages[part]["count"],
            f64::from(calls),
            "{part}: {stages:#}"
        );
        assert!(
            stages[part]["mean_ms"].as_f64().unwrap() > 0.0,
            "{part}: {stages:#}"
        );
    }
    assert!(
        stages["pay_svc_confirm_payment"]["mean_ms"]
            .as_f64()
            .unwrap()
            > stages["order_svc_mark_paid"]["mean_ms"].as_f64().unwrap(),
        "pay-svc waits for MarkPaid: {stages:#}"
    );
    let floor = &phase("floor: MarkPaid gRPC")["stages"];
    assert_eq!(floor["order_svc_mark_paid"]["count"], 200.0, "{floor:#}");
    assert_eq!(floor["pay_svc_confirm_payment"]["count"], 0.0, "{floor:#}");
    assert!(
        floor["mark_paid_group_size"].as_f64().unwrap() >= 1.0,
        "{floor:#}"
    );

    let targets = report["targets"].as_array().unwrap();
    let target = |name: &str| {
        targets
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no target `{name}` in {targets:?}"))
    };
    let ratio = target("first, c=8: e2e / MarkPaid floor throughput");
    assert!(
        ratio["measured"]
            .as_str()
            .unwrap()
            .contains("(median of 2 rounds: "),
        "{ratio}"
    );
    assert_eq!(
        target("duplicates of paid orders: orderquery calls")["met"],
        true
    );
    let notes = report["notes"].to_string();
    for part in [
        "CPU per request",
        "cores busy",
        "did nothing but their exchanges",
        "e2e: first notifications (round 2): ",
        "ms in flight per notification, of which pay-svc",
        "floor: MarkPaid gRPC (after): MarkPaid",
        "payments per group",
    ] {
        assert!(notes.contains(part), "no `{part}` in {notes}");
    }
}
