//! pay-svc's verdicts become WeChat's acks: SUCCESS only when pay-svc acknowledges.

use std::time::{Duration, Instant};

use paynotify::proto::pay::v1::NotifyOutcome;

use crate::{
    Harness, NOTIFICATION, SUCCESS_ACK,
    fake_pay_svc::{FakePaySvc, Script},
    is_fail_ack,
};

#[tokio::test]
async fn acknowledged_verdict_gets_the_exact_success_ack() {
    let h =
        Harness::start(FakePaySvc::start(Script::Verdict(NotifyOutcome::Paid, true, "paid")).await)
            .await;
    let (status, body) = h.post(NOTIFICATION).await;
    assert_eq!(status, 200);
    assert_eq!(body, SUCCESS_ACK);

    // Every field reached pay-svc, with a request id for the logs.
    let received = h.pay_svc.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let (fields, request_id) = &received[0];
    assert_eq!(fields["out_trade_no"], "1001");
    assert_eq!(fields["mch_id"], "1473426802");
    assert_eq!(fields["sign"], "ABC");
    assert_eq!(fields.len(), 5);
    assert!(request_id.as_deref().is_some_and(|id| id.len() == 16));
}

#[tokio::test]
async fn rejected_verdict_gets_a_fail_ack_with_the_reason() {
    let h = Harness::start(
        FakePaySvc::start(Script::Verdict(
            NotifyOutcome::BadSignature,
            false,
            "bad signature",
        ))
        .await,
    )
    .await;
    let (status, body) = h.post(NOTIFICATION).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[bad signature]]></return_msg></xml>"
    );
}

#[tokio::test]
async fn pay_svc_errors_get_a_fail_ack() {
    for code in [
        tonic::Code::Unavailable,
        tonic::Code::Internal,
        tonic::Code::DeadlineExceeded,
    ] {
        let h = Harness::start(FakePaySvc::start(Script::Error(code)).await).await;
        let (status, body) = h.post(NOTIFICATION).await;
        assert_eq!(status, 200);
        assert!(is_fail_ack(&body), "{code:?}: {body}");
    }
}

#[tokio::test]
async fn pay_svc_down_gets_a_fail_ack() {
    let h = Harness::start(FakePaySvc::down().await).await;
    let (status, body) = h.post(NOTIFICATION).await;
    assert_eq!(status, 200);
    assert!(is_fail_ack(&body), "{body}");
}

#[tokio::test]
async fn slow_pay_svc_gets_a_fail_ack_before_wechat_gives_up() {
    let h = Harness::start(FakePaySvc::start(Script::Slow(Duration::from_secs(5))).await).await;
    let started = Instant::now();
    let (_, body) = h.post(NOTIFICATION).await;
    assert!(is_fail_ack(&body), "{body}");
    // The upstream timeout (1 s here) bounds the reply, well inside WeChat's 5 s.
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_dead_replica_in_the_list_is_skipped() {
    let live = FakePaySvc::start(Script::Verdict(NotifyOutcome::Paid, true, "paid")).await;
    let dead = FakePaySvc::down().await;
    let urls = vec![
        format!("http://{}", dead.addr),
        format!("http://{}", live.addr),
    ];
    let h = Harness::start_with(live, |config| config.pay_svc_urls = urls).await;
    for _ in 0..10 {
        let (_, body) = h.post(NOTIFICATION).await;
        assert_eq!(body, SUCCESS_ACK);
    }
    assert_eq!(h.pay_svc.calls(), 10);
}

#[tokio::test]
async fn healthz_answers() {
    let h = Harness::start(FakePaySvc::down().await).await;
    let response = reqwest::get(format!("http://{}/healthz", h.gateway))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
