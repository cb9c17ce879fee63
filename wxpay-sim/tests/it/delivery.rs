//! Notification delivery over real sockets: WeChat's retry rules at a thousandth (or a
//! hundredth) of real time.

use std::time::Duration;

use paynotify::wxpay::{
    reply::SUCCESS_ACK,
    sign::{SignType, verify},
};
use wxpay_sim::{Config, SignAlgorithm};

use crate::support::{KEY, Receiver, Reply, Sim, fast_config, order_request};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn retries_until_the_success_ack_then_stops() {
    let receiver = Receiver::start(vec![Reply::fail(), Reply::fail(), Reply::success()]).await;
    let sim = Sim::start().await;
    let mut request = order_request("N1", 1999, &receiver.url);
    request.insert("attach".into(), "支付测试".into());
    sim.call("/pay/unifiedorder", request).await;
    let paid = sim.client.pay("N1", true).await.unwrap();

    let order = sim
        .client
        .wait_for_order("N1", WAIT, |o| o.delivered)
        .await
        .unwrap();
    assert_eq!(order.attempts.len(), 3);
    for failed in &order.attempts[..2] {
        assert!(!failed.success);
        assert_eq!(failed.http_status, Some(200));
        assert!(
            failed
                .error
                .as_deref()
                .unwrap()
                .contains("not the SUCCESS ack")
        );
    }
    assert!(order.attempts[2].success);
    assert_eq!(order.attempts[2].error, None);

    // The next retry would come 30 ms later; nothing more arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hits = receiver.hits();
    assert_eq!(hits.len(), 3);
    assert_eq!(sim.client.order("N1").await.unwrap().attempts.len(), 3);
    // Sent 15 s and 30 s after the first attempt, scaled. (Arrivals can be closer: the first
    // one also waited for the connection.)
    let sent_after_first = |n: usize| {
        (order.attempts[n].at - order.attempts[0].at)
            .to_std()
            .unwrap()
    };
    assert!(sent_after_first(1) >= Duration::from_millis(14));
    assert!(sent_after_first(2) >= Duration::from_millis(29));

    let notification = &hits[0].fields;
    assert_eq!(hits[0].content_type.as_deref(), Some("text/xml"));
    assert_eq!(verify(notification, KEY), Ok(SignType::Md5));
    assert!(!notification.contains_key("sign_type"));
    for (name, value) in [
        ("return_code", "SUCCESS"),
        ("result_code", "SUCCESS"),
        ("appid", wxpay_sim::DEMO_APPID),
        ("mch_id", wxpay_sim::DEMO_MCH_ID),
        ("out_trade_no", "N1"),
        ("total_fee", "1999"),
        ("cash_fee", "1999"),
        ("fee_type", "CNY"),
        ("trade_type", "NATIVE"),
        ("attach", "支付测试"),
        ("transaction_id", paid.transaction_id.as_str()),
    ] {
        assert_eq!(notification[name], value, "{name}");
    }
    for name in [
        "openid",
        "is_subscribe",
        "bank_type",
        "time_end",
        "nonce_str",
    ] {
        assert!(!notification[name].is_empty(), "{name}");
    }
    let stats = sim.client.stats().await.unwrap();
    assert_eq!(
        (stats.notifications_sent, stats.notifications_acked),
        (3, 1)
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_reply_after_the_deadline_is_a_failure() {
    let receiver = Receiver::start(vec![Reply::success().after(Duration::from_secs(2))]).await;
    // The default deadline: 5 s scaled, here the 200 ms floor.
    let sim = Sim::start_with(Config {
        reply_deadline_ms: None,
        ..fast_config()
    })
    .await;
    sim.unified_order("S1", 1, &receiver.url).await;
    sim.client.pay("S1", true).await.unwrap();
    let order = sim
        .client
        .wait_for_order("S1", WAIT, |o| !o.attempts.is_empty())
        .await
        .unwrap();
    let attempt = &order.attempts[0];
    assert!(!attempt.success);
    assert_eq!(attempt.http_status, None);
    assert!(
        attempt.error.as_deref().unwrap().contains("deadline"),
        "{attempt:?}"
    );
    assert!((190..1500).contains(&attempt.elapsed_ms), "{attempt:?}");
    assert!(!order.delivered);
    sim.stop().await;
}

#[tokio::test]
async fn answers_other_than_the_exact_ack_are_failures() {
    let receiver = Receiver::start(vec![
        Reply::text(200, "success"),
        Reply::text(200, "{\"return_code\":\"SUCCESS\",\"return_msg\":\"OK\"}"),
        Reply::text(500, SUCCESS_ACK),
        Reply::text(200, &format!("{SUCCESS_ACK}\n<!-- done -->x")),
        Reply::success(),
    ])
    .await;
    let sim = Sim::start().await;
    sim.unified_order("T1", 1, &receiver.url).await;
    sim.client.pay("T1", true).await.unwrap();
    let order = sim
        .client
        .wait_for_order("T1", WAIT, |o| o.delivered)
        .await
        .unwrap();
    let outcomes: Vec<_> = order
        .attempts
        .iter()
        .map(|a| (a.http_status, a.success))
        .collect();
    assert_eq!(
        outcomes,
        [
            (Some(200), false),
            (Some(200), false),
            (Some(500), false),
            (Some(200), false),
            (Some(200), true),
        ]
    );
    assert_eq!(order.attempts[2].error.as_deref(), Some("HTTP 500"));
    sim.stop().await;
}

#[tokio::test]
async fn an_ack_with_stray_characters_is_resent() {
    // Each means SUCCESS to a lenient XML reader; WeChat wants the document with nothing
    // before, after or between the tags but whitespace (SPEC §1.4).
    let stray = [
        SUCCESS_ACK.replace("</return_code>", "</return_code>\\n"),
        SUCCESS_ACK.replace("</return_code>", "</return_code><!-- handled -->"),
        format!("{SUCCESS_ACK}\n"),
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>{SUCCESS_ACK}"),
    ];
    let mut script: Vec<Reply> = stray.iter().map(|body| Reply::text(200, body)).collect();
    script.push(Reply::success());
    let receiver = Receiver::start(script).await;
    let sim = Sim::start().await;
    sim.unified_order("W1", 1, &receiver.url).await;
    sim.client.pay("W1", true).await.unwrap();
    let order = sim
        .client
        .wait_for_order("W1", WAIT, |o| o.delivered)
        .await
        .unwrap();
    assert_eq!(order.attempts.len(), stray.len() + 1, "{order:?}");
    for attempt in &order.attempts[..stray.len()] {
        assert!(!attempt.success, "{attempt:?}");
        assert!(
            attempt.error.as_deref().unwrap().contains("SUCCESS ack"),
            "{attempt:?}"
        );
    }
    assert!(order.attempts[stray.len()].success);
    assert_eq!(receiver.hits().len(), stray.len() + 1);
    sim.stop().await;
}

#[tokio::test]
async fn retries_keep_to_the_schedule_however_slow_the_replies() {
    // A hundredth of real time: retries due 150, 300 and 600 ms after the first attempt.
    // Each reply takes 140 ms; waiting the intervals after each reply instead would put the
    // retries at 290, 580 and 1020 ms.
    const SLOW_REPLY: Duration = Duration::from_millis(140);
    const DUE_MS: [u64; 4] = [0, 150, 300, 600];
    const SLACK: Duration = Duration::from_millis(100);
    let receiver = Receiver::start(vec![Reply::fail().after(SLOW_REPLY)]).await;
    let sim = Sim::start_with(Config {
        time_scale: 0.01,
        ..fast_config()
    })
    .await;
    sim.unified_order("D1", 1, &receiver.url).await;
    sim.client.pay("D1", true).await.unwrap();
    let order = sim
        .client
        .wait_for_order("D1", WAIT, |o| o.attempts.len() >= DUE_MS.len())
        .await
        .unwrap();
    let first = order.attempts[0].at;
    for (attempt, due_ms) in order.attempts.iter().zip(DUE_MS) {
        assert!(attempt.elapsed_ms >= 130, "{attempt:?}");
        let due = Duration::from_millis(due_ms);
        let sent_after_first = (attempt.at - first).to_std().unwrap();
        assert!(
            sent_after_first + Duration::from_millis(2) >= due && sent_after_first < due + SLACK,
            "retry due {due:?} after the first attempt was sent after {sent_after_first:?}"
        );
    }
    sim.stop().await;
}

#[tokio::test]
async fn an_unreachable_notify_url_is_recorded_and_retried() {
    // Port 9 (discard) on loopback: nothing listens, the connection is refused.
    let sim = Sim::start().await;
    sim.unified_order("R1", 1, "http://127.0.0.1:9/notify")
        .await;
    sim.client.pay("R1", true).await.unwrap();
    let order = sim
        .client
        .wait_for_order("R1", WAIT, |o| o.attempts.len() >= 2)
        .await
        .unwrap();
    assert!(
        order
            .attempts
            .iter()
            .all(|a| !a.success && a.http_status.is_none())
    );
    assert!(order.attempts[0].error.is_some());
    sim.stop().await;
}

#[tokio::test]
async fn pay_without_notify_then_replay_once_or_restart_the_schedule() {
    let receiver = Receiver::start(vec![Reply::fail(), Reply::success()]).await;
    let sim = Sim::start().await;
    sim.unified_order("P1", 10, &receiver.url).await;
    sim.client.pay("P1", false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(receiver.hits().is_empty());
    assert!(sim.client.order("P1").await.unwrap().attempts.is_empty());

    let replay = sim.client.replay("P1").await.unwrap();
    assert!(!replay.scheduled);
    assert_eq!(replay.attempts.len(), 1);
    assert!(!replay.attempts[0].success);
    assert_eq!(receiver.hits().len(), 1);
    // A single replay starts no schedule.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(receiver.hits().len(), 1);

    let restarted = sim.client.restart_notifications("P1").await.unwrap();
    assert!(restarted.scheduled);
    let order = sim
        .client
        .wait_for_order("P1", WAIT, |o| o.delivered)
        .await
        .unwrap();
    assert_eq!(order.attempts.len(), 2);
    assert_eq!(receiver.hits().len(), 2);
    sim.stop().await;
}

#[tokio::test]
async fn notifications_can_be_signed_with_hmac_sha256() {
    let receiver = Receiver::start(vec![Reply::success()]).await;
    let sim = Sim::start_with(Config {
        notify_sign_type: SignAlgorithm::HmacSha256,
        ..fast_config()
    })
    .await;
    sim.unified_order("M1", 1, &receiver.url).await;
    sim.client.pay("M1", true).await.unwrap();
    let hits = receiver.wait_for_hits(1).await;
    assert_eq!(hits[0].fields["sign_type"], "HMAC-SHA256");
    assert_eq!(verify(&hits[0].fields, KEY), Ok(SignType::HmacSha256));
    sim.stop().await;
}

#[tokio::test]
async fn shutdown_stops_pending_deliveries() {
    let receiver = Receiver::start(vec![Reply::fail()]).await;
    // Real time: the first retry would come 15 s later.
    let sim = Sim::start_with(Config {
        time_scale: 1.0,
        ..fast_config()
    })
    .await;
    sim.unified_order("X1", 1, &receiver.url).await;
    sim.client.pay("X1", true).await.unwrap();
    receiver.wait_for_hits(1).await;
    let took = sim.stop().await;
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    assert_eq!(receiver.hits().len(), 1);
}
