//! Which pay-svc errors send the notification on to the next replica: a replica that cannot
//! serve is skipped, but one that reports WeChat answering with a failure is answered as it
//! is, since every other replica would ask WeChat again.

use paynotify::proto::pay::v1::NotifyOutcome;

use crate::{
    Harness, NOTIFICATION, SUCCESS_ACK,
    fake_pay_svc::{FakePaySvc, Script},
    is_fail_ack,
};

/// A gateway in front of `first` and `second`, in that order; the gateway's round-robin
/// starts at `first`.
async fn gateway_over(first: &FakePaySvc, second: &FakePaySvc) -> Harness {
    let urls = vec![
        format!("http://{}", first.addr),
        format!("http://{}", second.addr),
    ];
    Harness::start_with(first.clone(), |config| config.pay_svc_urls = urls).await
}

#[tokio::test]
async fn a_dependency_failure_is_answered_fail_without_trying_the_next_replica() {
    let first = FakePaySvc::start(Script::DependencyDown("wechat")).await;
    let second = FakePaySvc::start(Script::Verdict(NotifyOutcome::Paid, true, "paid")).await;
    let h = gateway_over(&first, &second).await;

    let (status, body) = h.post(NOTIFICATION).await;
    assert_eq!(status, 200);
    assert!(is_fail_ack(&body), "{body}");
    assert_eq!(first.calls(), 1);
    assert_eq!(second.calls(), 0);

    // The first replica was not marked down: round-robin goes on to the second, then back to
    // the first (a replica marked down would be tried last, for 2 s).
    let (_, body) = h.post(NOTIFICATION).await;
    assert_eq!(body, SUCCESS_ACK);
    let (_, body) = h.post(NOTIFICATION).await;
    assert!(is_fail_ack(&body), "{body}");
    assert_eq!(first.calls(), 2);
    assert_eq!(second.calls(), 1);
}

#[tokio::test]
async fn an_unavailable_replica_is_still_skipped_for_the_next() {
    // UNAVAILABLE without the dependency entry: the replica itself cannot serve (draining).
    let first = FakePaySvc::start(Script::Error(tonic::Code::Unavailable)).await;
    let second = FakePaySvc::start(Script::Verdict(NotifyOutcome::Paid, true, "paid")).await;
    let h = gateway_over(&first, &second).await;

    let (status, body) = h.post(NOTIFICATION).await;
    assert_eq!(status, 200);
    assert_eq!(body, SUCCESS_ACK);
    assert_eq!(first.calls(), 1);
    assert_eq!(second.calls(), 1);
}

#[tokio::test]
async fn a_down_replica_is_still_skipped_for_the_next() {
    let first = FakePaySvc::down().await;
    let second = FakePaySvc::start(Script::Verdict(NotifyOutcome::Paid, true, "paid")).await;
    let h = gateway_over(&first, &second).await;

    for _ in 0..4 {
        let (_, body) = h.post(NOTIFICATION).await;
        assert_eq!(body, SUCCESS_ACK);
    }
    assert_eq!(second.calls(), 4);
}
