//! The metrics after a known sequence of notifications: one of each outcome the gateway can
//! reach pay-svc with, plus one body that never gets that far. The registry is shared by
//! every service of the process (and by earlier tests of this binary), so the test compares
//! a scrape after the sequence with one before it.

use crate::support::{self, Metrics, post, scrape, sign};

const NOTIFICATIONS: &str = "paysvc_notifications_total";
const REPLIES: &str = "gateway_notify_replies_total";

#[tokio::test]
async fn a_known_sequence_of_notifications_shows_in_the_counts() {
    let _serial = support::serial().await;
    let stack = support::start().await;
    let order = support::new_order(&stack, 1_000).await;
    let paid = support::paid_notification(&stack, &order).await;
    let other = support::new_order(&stack, 2_000).await;
    let mut overpaid = support::paid_notification(&stack, &other).await;
    let before = (
        scrape(stack.gateway).await,
        scrape(stack.pay_svc_metrics).await,
        scrape(stack.order_svc_metrics).await,
    );

    let signed = sign(&paid);
    let first = post(&stack, signed.clone()).await;
    assert!(first.is_success(), "paid: {first:?}");
    // Every reply names the request id its log lines carry.
    assert_eq!(first.request_id.len(), 16, "{first:?}");
    assert!(post(&stack, signed.clone()).await.is_success(), "duplicate");

    let tampered = signed.replace(
        "<total_fee><![CDATA[1000]]></total_fee>",
        "<total_fee><![CDATA[1]]></total_fee>",
    );
    assert_ne!(tampered, signed);
    assert!(!post(&stack, tampered).await.is_success(), "bad signature");

    let mut foreign = paid.clone();
    foreign.mch_id = "1900000109".into();
    assert!(
        !post(&stack, sign(&foreign)).await.is_success(),
        "wrong merchant"
    );

    overpaid.total_fee = 3_000;
    overpaid.cash_fee = 3_000;
    assert!(
        !post(&stack, sign(&overpaid)).await.is_success(),
        "amount mismatch"
    );

    let mut unknown = paid.clone();
    unknown.out_trade_no = "NO-SUCH-ORDER-1".into();
    assert!(
        !post(&stack, sign(&unknown)).await.is_success(),
        "unknown order"
    );

    let mut failed = paid.clone();
    failed.result_code = "FAIL".into();
    failed.err_code = Some("NOTENOUGH".into());
    assert!(post(&stack, sign(&failed)).await.is_success(), "not paid");

    let return_fail = "<xml><return_code>FAIL</return_code><return_msg>x</return_msg></xml>";
    assert!(post(&stack, return_fail).await.is_success(), "return fail");

    let garbage = post(&stack, "not xml at all").await;
    assert_eq!(garbage.status, 400);

    let after = (
        scrape(stack.gateway).await,
        scrape(stack.pay_svc_metrics).await,
        scrape(stack.order_svc_metrics).await,
    );
    let delta = |scrapes: (&Metrics, &Metrics), name: &str, labels: &[(&str, &str)]| {
        scrapes.1.get(name, labels) - scrapes.0.get(name, labels)
    };
    let gateway = (&before.0, &after.0);
    let pay_svc = (&before.1, &after.1);
    let order_svc = (&before.2, &after.2);

    for (outcome, count) in [
        ("paid", 1.0),
        ("duplicate", 1.0),
        ("bad_signature", 1.0),
        ("wrong_merchant", 1.0),
        ("amount_mismatch", 1.0),
        ("unknown_order", 1.0),
        ("not_paid", 1.0),
        ("return_fail", 1.0),
        ("not_confirmed", 0.0),
        ("payment_conflict", 0.0),
        ("malformed", 0.0),
        ("dependency_error", 0.0),
    ] {
        assert_eq!(
            delta(pay_svc, NOTIFICATIONS, &[("outcome", outcome)]),
            count,
            "{NOTIFICATIONS}{{outcome={outcome}}}"
        );
        // Registered at start, so a dashboard sees 0 rather than nothing.
        assert!(
            after.1.samples_of(NOTIFICATIONS, &[("outcome", outcome)]),
            "{outcome} not exported"
        );
    }

    for (ack, reason, count) in [
        ("SUCCESS", "acknowledged", 4.0),
        ("FAIL", "rejected", 4.0),
        ("FAIL", "unparseable", 1.0),
        ("FAIL", "upstream_error", 0.0),
        ("FAIL", "upstream_timeout", 0.0),
    ] {
        assert_eq!(
            delta(gateway, REPLIES, &[("ack", ack), ("reason", reason)]),
            count,
            "{REPLIES}{{ack={ack},reason={reason}}}"
        );
    }
    assert_eq!(
        delta(
            gateway,
            "gateway_http_request_duration_seconds_count",
            &[("route", "/wxpay/notify")]
        ),
        9.0
    );

    // Only the first notification needed WeChat's word: the duplicate was answered from the
    // order, the rest were refused before asking.
    assert_eq!(
        delta(
            pay_svc,
            "paysvc_orderquery_total",
            &[("source", "notification"), ("result", "ok")]
        ),
        1.0
    );
    assert_eq!(
        delta(pay_svc, "paysvc_orderquery_total", &[]),
        1.0,
        "no other orderquery"
    );
    assert_eq!(
        delta(
            pay_svc,
            "paysvc_orderquery_duration_seconds_count",
            &[("result", "ok")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            pay_svc,
            "grpc_server_handled_total",
            &[
                ("grpc_service", "pay.v1.PayService"),
                ("grpc_method", "ConfirmPayment"),
                ("grpc_code", "OK")
            ]
        ),
        8.0
    );
    assert_eq!(
        delta(
            pay_svc,
            "grpc_server_handling_seconds_count",
            &[
                ("grpc_service", "pay.v1.PayService"),
                ("grpc_method", "ConfirmPayment")
            ]
        ),
        8.0
    );

    assert_eq!(
        delta(
            order_svc,
            "ordersvc_mark_paid_total",
            &[("outcome", "marked_paid")]
        ),
        1.0
    );
    assert_eq!(delta(order_svc, "ordersvc_mark_paid_total", &[]), 1.0);
    assert_eq!(
        delta(
            order_svc,
            "ordersvc_mark_paid_duration_seconds_count",
            &[("outcome", "marked_paid")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            order_svc,
            "grpc_server_handled_total",
            &[
                ("grpc_service", "order.v1.OrderService"),
                ("grpc_method", "MarkPaid"),
                ("grpc_code", "OK")
            ]
        ),
        1.0
    );
    // GetOrder for every notification that got past the signature and merchant checks, but
    // the duplicate: pay-svc had just seen that order paid (PAID_CACHE_ENTRIES).
    assert_eq!(
        delta(
            order_svc,
            "grpc_server_handled_total",
            &[
                ("grpc_service", "order.v1.OrderService"),
                ("grpc_method", "GetOrder")
            ]
        ),
        3.0
    );
    assert!(after.1.has("paysvc_reconcile_runs_total"));
    assert!(after.2.has("ordersvc_payment_anomalies_total"));

    stack.stack.shutdown().await.unwrap();
}
