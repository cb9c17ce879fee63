//! Log lines as a log pipeline sees them (LOG_FORMAT=json): every line the gateway, pay-svc
//! and order-svc write about one notification carries the gateway's request id (sent on as
//! gRPC metadata `x-request-id`) and the order's out_trade_no, and security events are WARN
//! lines with a stable `event` name.
//!
//! The lines are captured by this binary's global subscriber, formatted exactly as
//! `paynotify::runtime::init_telemetry(LogFormat::Json)` formats them. Lines from the
//! simulator (target `wxpay_sim`) are WeChat's side of the exchange and carry no request id.

use std::{
    io::Write,
    sync::{Mutex, Once},
    time::Duration,
};

use serde_json::Value;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::support::{self, post, sign};

static CAPTURED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        CAPTURED.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing JSON subscriber (once per process).
fn capture() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing_subscriber::registry()
            // The default level, and DEBUG for this system's own crates: their extra lines
            // must be correlated too.
            .with(EnvFilter::new(
                "info,gateway=debug,pay_svc=debug,order_svc=debug,paynotify=debug",
            ))
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(|| Capture),
            )
            .init();
    });
}

/// Where the captured output ends now.
fn mark() -> usize {
    CAPTURED.lock().unwrap().len()
}

/// The lines captured since `mark`, parsed.
fn lines_since(mark: usize) -> Vec<Value> {
    let captured = CAPTURED.lock().unwrap();
    String::from_utf8_lossy(&captured[mark..])
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// Every value of `field` on the line: the event's own, then its spans'.
fn values<'a>(line: &'a Value, field: &str) -> Vec<&'a str> {
    let own = line.get(field).and_then(Value::as_str);
    let spans = line["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|span| span.get(field).and_then(Value::as_str));
    own.into_iter()
        .chain(spans)
        .filter(|v| !v.is_empty())
        .collect()
}

fn target(line: &Value) -> &str {
    line["target"].as_str().unwrap_or_default()
}

/// The lines of our services (not the simulator's) since `mark`, each checked to carry
/// exactly `request_id` and `out_trade_no`; each of `services` must have written some.
fn assert_correlated(
    mark: usize,
    request_id: &str,
    out_trade_no: &str,
    services: &[&str],
) -> Vec<Value> {
    let lines: Vec<Value> = lines_since(mark)
        .into_iter()
        .filter(|line| !target(line).starts_with("wxpay_sim"))
        .collect();
    for line in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line.get(key).is_some(), "no {key}: {line}");
        }
        let ids = values(line, "request_id");
        assert!(!ids.is_empty(), "no request_id: {line}");
        assert!(
            ids.iter().all(|id| *id == request_id),
            "{request_id}: {line}"
        );
        let orders = values(line, "out_trade_no");
        assert!(!orders.is_empty(), "no out_trade_no: {line}");
        assert!(
            orders.iter().all(|o| *o == out_trade_no),
            "{out_trade_no}: {line}"
        );
    }
    for service in services {
        assert!(
            lines.iter().any(|line| target(line).starts_with(service)),
            "no line from {service}: {lines:#?}"
        );
    }
    lines
}

#[tokio::test]
async fn every_line_about_a_notification_carries_its_request_id_and_order() {
    let _serial = support::serial().await;
    capture();
    let stack = support::start().await;
    let order = support::new_order(&stack, 1_500).await;
    let notification = support::paid_notification(&stack, &order).await;

    let before = mark();
    let answer = post(&stack, sign(&notification)).await;
    assert!(answer.is_success(), "{answer:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = assert_correlated(
        before,
        &answer.request_id,
        &order.id,
        &["gateway", "pay_svc", "order_svc"],
    );
    // The hop into order-svc is there: MarkPaid's line.
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "order marked paid" && target(l).starts_with("order_svc")),
        "{lines:#?}"
    );

    // A forged notification: a WARN with the stable event name, correlated the same way.
    let forged = sign(&notification).replace(
        "<total_fee><![CDATA[1500]]></total_fee>",
        "<total_fee><![CDATA[1]]></total_fee>",
    );
    let before = mark();
    let answer = post(&stack, forged).await;
    assert!(!answer.is_success(), "{answer:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = assert_correlated(
        before,
        &answer.request_id,
        &order.id,
        &["gateway", "pay_svc"],
    );
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "WARN" && l["event"] == "notify.bad_signature"),
        "{lines:#?}"
    );

    // Correctly signed, for an order order-svc does not have (a restored database, a deleted
    // order): a WARN too, since WeChat gives up resending after a day.
    let mut unknown = notification.clone();
    unknown.out_trade_no = "no-such-order-in-logs".into();
    let before = mark();
    let answer = post(&stack, sign(&unknown)).await;
    assert!(!answer.is_success(), "{answer:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = assert_correlated(
        before,
        &answer.request_id,
        &unknown.out_trade_no,
        &["gateway", "pay_svc"],
    );
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "WARN" && l["event"] == "notify.unknown_order"),
        "{lines:#?}"
    );

    stack.stack.shutdown().await.unwrap();
}
