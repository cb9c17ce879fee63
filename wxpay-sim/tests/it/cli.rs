//! The developer CLI: the commands run as functions against real servers, and `notify` once
//! through the built binary, configured from the environment.

use std::time::Duration;

use paynotify::wxpay::sign::{SignType, verify};
use wxpay_sim::cli::{Cli, Outcome, Tool};

use clap::Parser;

use crate::support::{KEY, Receiver, Reply, Sim};

fn tool(args: &[&str]) -> Tool {
    let mut argv = vec!["wxpay-sim"];
    argv.extend_from_slice(args);
    match Cli::try_parse_from(argv).unwrap().action() {
        wxpay_sim::cli::Action::Tool(tool) => tool,
        other => panic!("not a tool: {other:?}"),
    }
}

async fn run(args: &[&str]) -> (Outcome, String) {
    let mut out = Vec::new();
    let outcome = tool(args).run(&mut out).await.unwrap();
    (outcome, String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn notify_reports_a_success_ack() {
    let receiver = Receiver::start(vec![Reply::success()]).await;
    let (outcome, out) = run(&[
        "notify",
        "--url",
        &receiver.url,
        "--out-trade-no",
        "C1",
        "--total-fee",
        "1999",
        "--transaction-id",
        "4200000000202401010000000001",
        "--attach",
        "支付测试",
    ])
    .await;
    assert_eq!(outcome, Outcome::Done, "{out}");
    assert!(out.contains("HTTP 200"), "{out}");
    assert!(out.contains("would count this as SUCCESS"), "{out}");

    let hits = receiver.wait_for_hits(1).await;
    let notification = &hits[0].fields;
    assert_eq!(verify(notification, KEY), Ok(SignType::Md5));
    assert_eq!(notification["out_trade_no"], "C1");
    assert_eq!(notification["total_fee"], "1999");
    assert_eq!(
        notification["transaction_id"],
        "4200000000202401010000000001"
    );
    assert_eq!(notification["attach"], "支付测试");
    assert_eq!(notification["result_code"], "SUCCESS");
}

#[tokio::test]
async fn notify_reports_replies_wechat_would_retry() {
    let receiver = Receiver::start(vec![Reply::text(200, "success")]).await;
    let (outcome, out) = run(&[
        "notify",
        "--url",
        &receiver.url,
        "--out-trade-no",
        "C2",
        "--total-fee",
        "1",
        "--sign-type",
        "hmac-sha256",
        "--result-code",
        "FAIL",
    ])
    .await;
    assert_eq!(outcome, Outcome::NotAcknowledged, "{out}");
    assert!(out.contains("reply: success"), "{out}");
    assert!(out.contains("would NOT count this as SUCCESS"), "{out}");
    let notification = &receiver.wait_for_hits(1).await[0].fields;
    assert_eq!(verify(notification, KEY), Ok(SignType::HmacSha256));
    assert_eq!(notification["result_code"], "FAIL");
    assert_eq!(notification["err_code"], "SYSTEMERROR");

    // Nothing listening: no reply at all.
    let (outcome, out) = run(&[
        "notify",
        "--url",
        "http://127.0.0.1:9/notify",
        "--out-trade-no",
        "C2",
        "--total-fee",
        "1",
    ])
    .await;
    assert_eq!(outcome, Outcome::NotAcknowledged);
    assert!(out.contains("no HTTP reply"), "{out}");
}

#[tokio::test]
async fn pay_attempts_replay_and_stats_drive_a_running_simulator() {
    let receiver = Receiver::start(vec![Reply::fail(), Reply::success()]).await;
    let sim = Sim::start().await;
    sim.unified_order("C3", 250, &receiver.url).await;
    let sim_url = sim.base.as_str();

    let (_, out) = run(&["pay", "C3", "--no-notify", "--sim-url", sim_url]).await;
    assert!(out.contains("paid C3: transaction_id=4200"), "{out}");
    assert!(out.contains("total_fee=250"), "{out}");

    let (_, out) = run(&["attempts", "C3", "--sim-url", sim_url]).await;
    assert!(out.contains("trade_state=SUCCESS"), "{out}");
    assert!(out.contains("no notification attempts"), "{out}");

    let (_, out) = run(&["replay", "C3", "--sim-url", sim_url]).await;
    assert!(out.contains("FAIL"), "{out}");
    let (_, out) = run(&["replay", "C3", "--sim-url", sim_url]).await;
    assert!(out.contains("SUCCESS"), "{out}");

    let (_, out) = run(&["attempts", "C3", "--sim-url", sim_url]).await;
    assert!(out.contains("delivered=true"), "{out}");
    let rows: Vec<&str> = out.lines().filter(|l| l.contains("  200  ")).collect();
    assert_eq!(rows.len(), 2, "{out}");

    let (_, out) = run(&["stats", "--sim-url", sim_url]).await;
    let stats: wxpay_sim::SimStats = serde_json::from_str(&out).unwrap();
    assert_eq!(stats.notifications_sent, 2);

    let error = tool(&["pay", "C404", "--sim-url", sim_url])
        .run(&mut Vec::new())
        .await
        .unwrap_err();
    assert!(format!("{error:#}").contains("404"), "{error:#}");

    // A chosen transaction_id (to match a notification signed by hand), used once only.
    sim.unified_order("C4", 300, &receiver.url).await;
    sim.unified_order("C5", 300, &receiver.url).await;
    let chosen = "4200000000202401011234567890";
    let (_, out) = run(&[
        "pay",
        "C4",
        "--no-notify",
        "--transaction-id",
        chosen,
        "--sim-url",
        sim_url,
    ])
    .await;
    assert!(out.contains(&format!("transaction_id={chosen}")), "{out}");
    let (_, out) = run(&["attempts", "C4", "--sim-url", sim_url]).await;
    assert!(out.contains(&format!("transaction_id={chosen}")), "{out}");
    for (order, id, status) in [("C5", chosen, "409"), ("C5", "not-digits!", "400")] {
        let error = tool(&["pay", order, "--transaction-id", id, "--sim-url", sim_url])
            .run(&mut Vec::new())
            .await
            .unwrap_err();
        assert!(format!("{error:#}").contains(status), "{id}: {error:#}");
    }
    sim.stop().await;
}

#[tokio::test]
async fn coupons_trade_states_and_unknown_fields_from_the_cli() {
    let sim = Sim::start().await;
    let sim_url = sim.base.as_str();
    sim.unified_order("C6", 1000, "http://127.0.0.1:9/notify")
        .await;
    let (_, out) = run(&[
        "pay",
        "C6",
        "--no-notify",
        "--coupon-fee",
        "250",
        "--sim-url",
        sim_url,
    ])
    .await;
    assert!(out.contains("total_fee=1000 fen cash_fee=750 fen"), "{out}");
    let (_, out) = run(&["attempts", "C6", "--sim-url", sim_url]).await;
    assert!(out.contains("coupon_fee=250"), "{out}");

    sim.unified_order("C7", 1000, "http://127.0.0.1:9/notify")
        .await;
    let (_, out) = run(&["trade-state", "C7", "USERPAYING", "--sim-url", sim_url]).await;
    assert!(out.contains("C7 trade_state=USERPAYING"), "{out}");
    let error = tool(&["trade-state", "C7", "SUCCESS", "--sim-url", sim_url])
        .run(&mut Vec::new())
        .await
        .unwrap_err();
    assert!(format!("{error:#}").contains("400"), "{error:#}");
    assert!(Cli::try_parse_from(["wxpay-sim", "trade-state", "C7", "paying"]).is_err());
    sim.stop().await;

    let receiver = Receiver::start(vec![Reply::success()]).await;
    let (outcome, out) = run(&[
        "notify",
        "--url",
        &receiver.url,
        "--out-trade-no",
        "C8",
        "--total-fee",
        "1999",
        "--coupon-fee",
        "300",
        "--unknown-field",
    ])
    .await;
    assert_eq!(outcome, Outcome::Done, "{out}");
    assert!(out.contains("total_fee=1999 cash_fee=1699"), "{out}");
    let notification = &receiver.wait_for_hits(1).await[0].fields;
    assert_eq!(verify(notification, KEY), Ok(SignType::Md5));
    for (name, value) in [
        ("total_fee", "1999"),
        ("cash_fee", "1699"),
        ("coupon_fee", "300"),
        ("coupon_count", "1"),
        ("coupon_fee_0", "300"),
        wxpay_sim::UNKNOWN_FIELD,
    ] {
        assert_eq!(notification[name], value, "{name}");
    }
}

#[tokio::test]
async fn the_binary_signs_with_the_key_from_the_environment() {
    let receiver = Receiver::start(vec![Reply::success()]).await;
    let url = receiver.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_wxpay-sim"))
            .args([
                "notify",
                "--url",
                &url,
                "--out-trade-no",
                "B1",
                "--total-fee",
                "7",
            ])
            .env("WXPAY_API_KEY", "another-key-from-the-environment")
            .env("WXPAY_MCH_ID", "1900000109")
            .output()
            .unwrap()
    });
    let output = tokio::time::timeout(Duration::from_secs(10), output)
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("would count this as SUCCESS"), "{stdout}");
    let notification = &receiver.wait_for_hits(1).await[0].fields;
    assert_eq!(notification["mch_id"], "1900000109");
    assert!(verify(notification, KEY).is_err());
    assert_eq!(
        verify(notification, "another-key-from-the-environment"),
        Ok(SignType::Md5)
    );
}
