//! ConfirmPayment over gRPC against the real order-svc and the simulator as WeChat: each
//! verdict of pay.proto, what it changes (or not) in order-svc, and what it costs at WeChat.

use paynotify::proto::{
    order::v1::OrderState,
    pay::v1::{ConfirmPaymentRequest, ConfirmPaymentResponse, NotifyOutcome},
};
use wxpay_sim::{DEMO_API_KEY, NewOrder};

use crate::support::{bounded, paid_notification, signed, signed_with, stack};

fn assert_verdict(response: &ConfirmPaymentResponse, outcome: NotifyOutcome, acknowledge: bool) {
    assert_eq!(response.outcome(), outcome, "{response:?}");
    assert_eq!(response.acknowledge, acknowledge, "{response:?}");
}

#[tokio::test]
async fn a_confirmed_payment_marks_the_order_paid_once() {
    bounded(async {
        let mut s = stack().await;
        let (order, transaction_id) = s.paid_at_wechat(2500).await;
        let notification = paid_notification(&order.id, 2500, &transaction_id);

        let response = s.confirm(signed(&notification)).await.unwrap();
        assert_verdict(&response, NotifyOutcome::Paid, true);
        assert_eq!(response.out_trade_no, order.id);
        assert_eq!(response.transaction_id, transaction_id);

        let paid = s.order(&order.id).await;
        assert_eq!(paid.state(), OrderState::Paid);
        assert_eq!(paid.transaction_id, transaction_id);
        assert_eq!(paid.pay_status, "1");
        assert!(!paid.pay_time.is_empty());
        assert_eq!(s.logs(&order.id).await.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_duplicate_is_acknowledged_without_asking_wechat_again() {
    bounded(async {
        let mut s = stack().await;
        let (order, transaction_id) = s.paid_at_wechat(990).await;
        let notification = paid_notification(&order.id, 990, &transaction_id);
        let first = s.confirm(signed(&notification)).await.unwrap();
        assert_verdict(&first, NotifyOutcome::Paid, true);
        let queries = s.orderquery_calls().await;

        // WeChat resends (new nonce, same payment).
        let again = s.confirm(signed(&notification)).await.unwrap();
        assert_verdict(&again, NotifyOutcome::Duplicate, true);
        assert_eq!(s.orderquery_calls().await, queries);
        assert_eq!(s.logs(&order.id).await.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn concurrent_copies_pay_the_order_exactly_once() {
    bounded(async {
        let mut s = stack().await;
        let (order, transaction_id) = s.paid_at_wechat(1200).await;
        let notification = paid_notification(&order.id, 1200, &transaction_id);
        let copies: Vec<_> = (0..6)
            .map(|_| {
                let mut pay = s.pay.clone();
                let fields = signed(&notification).into_iter().collect();
                tokio::spawn(async move {
                    pay.confirm_payment(ConfirmPaymentRequest { fields })
                        .await
                        .unwrap()
                        .into_inner()
                })
            })
            .collect();
        let mut responses = Vec::new();
        for copy in copies {
            responses.push(copy.await.unwrap());
        }
        let paid = responses
            .iter()
            .filter(|r| r.outcome() == NotifyOutcome::Paid)
            .count();
        assert_eq!(paid, 1, "{responses:?}");
        assert!(responses.iter().all(|r| r.acknowledge
            && matches!(r.outcome(), NotifyOutcome::Paid | NotifyOutcome::Duplicate)));
        assert_eq!(s.logs(&order.id).await.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_forged_signature_changes_nothing() {
    bounded(async {
        let mut s = stack().await;
        let (order, transaction_id) = s.paid_at_wechat(2500).await;
        let mut fields = signed(&paid_notification(&order.id, 2500, &transaction_id));
        // Tampered after signing.
        fields.insert("total_fee".into(), "1".into());
        let response = s.confirm(fields).await.unwrap();
        assert_verdict(&response, NotifyOutcome::BadSignature, false);

        // Signed with a guessed key.
        let guessed = signed_with(
            &paid_notification(&order.id, 2500, &transaction_id),
            "00000000000000000000000000000000",
        );
        let response = s.confirm(guessed).await.unwrap();
        assert_verdict(&response, NotifyOutcome::BadSignature, false);

        // No signature at all.
        let mut unsigned = signed(&paid_notification(&order.id, 2500, &transaction_id));
        unsigned.remove("sign");
        let response = s.confirm(unsigned).await.unwrap();
        assert_verdict(&response, NotifyOutcome::BadSignature, false);

        assert_eq!(s.order(&order.id).await.state(), OrderState::Unpaid);
        assert_eq!(s.orderquery_calls().await, 0);
        assert!(s.logs(&order.id).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn another_merchants_notification_is_refused() {
    bounded(async {
        let mut s = stack().await;
        let (order, transaction_id) = s.paid_at_wechat(2500).await;
        for (appid, mch_id) in [
            ("wx0000000000000000", wxpay_sim::DEMO_MCH_ID),
            (wxpay_sim::DEMO_APPID, "1900000109"),
        ] {
            let mut notification = paid_notification(&order.id, 2500, &transaction_id);
            notification.appid = appid.into();
            notification.mch_id = mch_id.into();
            // Validly signed (the key is the same), but not addressed to us.
            let response = s.confirm(signed(&notification)).await.unwrap();
            assert_verdict(&response, NotifyOutcome::WrongMerchant, false);
        }
        assert_eq!(s.order(&order.id).await.state(), OrderState::Unpaid);
        assert_eq!(s.orderquery_calls().await, 0);
    })
    .await;
}

#[tokio::test]
async fn an_amount_that_differs_from_the_order_is_refused_before_asking_wechat() {
    bounded(async {
        let mut s = stack().await;
        let (order, transaction_id) = s.paid_at_wechat(2500).await;
        let response = s
            .confirm(signed(&paid_notification(&order.id, 1, &transaction_id)))
            .await
            .unwrap();
        assert_verdict(&response, NotifyOutcome::AmountMismatch, false);
        assert_eq!(s.order(&order.id).await.state(), OrderState::Unpaid);
        assert_eq!(s.orderquery_calls().await, 0);
    })
    .await;
}

#[tokio::test]
async fn an_amount_that_differs_from_wechats_record_is_refused() {
    bounded(async {
        let mut s = stack().await;
        // Our order costs 2500, but the buyer paid WeChat 1 fen for it (a price tampered
        // client-side), and the attacker holds the key to sign a notification claiming 2500.
        let order = s.create_order(2500).await;
        s.sim
            .create_order(&NewOrder {
                out_trade_no: order.id.clone(),
                total_fee: 1,
                notify_url: "http://127.0.0.1:9/notify".into(),
                body: None,
                attach: None,
            })
            .await
            .unwrap();
        let paid = s.sim.pay(&order.id, false).await.unwrap();
        let response = s
            .confirm(signed(&paid_notification(
                &order.id,
                2500,
                &paid.transaction_id,
            )))
            .await
            .unwrap();
        assert_verdict(&response, NotifyOutcome::AmountMismatch, false);
        assert!(response.reason.contains("WeChat"), "{}", response.reason);
        assert_eq!(s.order(&order.id).await.state(), OrderState::Unpaid);
        assert_eq!(s.orderquery_calls().await, 1);
    })
    .await;
}

#[tokio::test]
async fn an_unknown_order_is_not_acknowledged() {
    bounded(async {
        let mut s = stack().await;
        let response = s
            .confirm(signed(&paid_notification(
                "NOSUCHORDER1",
                100,
                "4200000000000001",
            )))
            .await
            .unwrap();
        assert_verdict(&response, NotifyOutcome::UnknownOrder, false);
        assert_eq!(s.orderquery_calls().await, 0);
    })
    .await;
}

#[tokio::test]
async fn a_payment_wechat_has_not_seen_is_not_confirmed() {
    bounded(async {
        let mut s = stack().await;
        // Submitted to WeChat (NOTPAY there), and a signed notification claims it paid.
        let order = s.create_native_order(2500).await;
        let response = s
            .confirm(signed(&paid_notification(
                &order.id,
                2500,
                "4200000000000002",
            )))
            .await
            .unwrap();
        assert_verdict(&response, NotifyOutcome::NotConfirmed, false);
        assert!(response.reason.contains("NOTPAY"), "{}", response.reason);
        assert_eq!(s.order(&order.id).await.state(), OrderState::Unpaid);
        assert!(s.logs(&order.id).await.is_empty());

        // Paid at WeChat, but by another transaction than the notification names.
        s.sim.pay(&order.id, false).await.unwrap();
        let response = s
            .confirm(signed(&paid_notification(
                &order.id,
                2500,
                "4200000000000002",
            )))
            .await
            .unwrap();
        assert_verdict(&response, NotifyOutcome::NotConfirmed, false);
        assert_eq!(s.order(&order.id).await.state(), OrderState::Unpaid);
    })
    .await;
}

#[tokio::test]
async fn a_failed_payment_is_acknowledged_and_changes_nothing() {
    bounded(async {
        let mut s = stack().await;
        let order = s.create_native_order(2500).await;
        let mut notification = paid_notification(&order.id, 2500, "4200000000000003");
        notification.result_code = "FAIL".into();
        notification.err_code = Some("NOTENOUGH".into());
        notification.err_code_des = Some("余额不足".into());
        let response = s.confirm(signed(&notification)).await.unwrap();
        assert_verdict(&response, NotifyOutcome::NotPaid, true);
        assert_eq!(s.order(&order.id).await.state(), OrderState::Unpaid);
        assert_eq!(s.orderquery_calls().await, 0);
    })
    .await;
}

#[tokio::test]
async fn return_fail_and_malformed_notifications() {
    bounded(async {
        let mut s = stack().await;
        let fail = [("return_code", "FAIL"), ("return_msg", "参数格式校验错误")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let response = s.confirm(fail).await.unwrap();
        assert_verdict(&response, NotifyOutcome::ReturnFail, true);

        let order = s.create_native_order(2500).await;
        let mut fields = signed(&paid_notification(&order.id, 2500, "4200000000000004"));
        fields.insert("total_fee".into(), "25.00".into());
        let resigned =
            wxpay_sim::signed_xml(fields, DEMO_API_KEY, paynotify::wxpay::sign::SignType::Md5);
        let fields = paynotify::wxpay::xml::parse(resigned.as_bytes()).unwrap();
        let response = s.confirm(fields).await.unwrap();
        assert_verdict(&response, NotifyOutcome::Malformed, false);
    })
    .await;
}

#[tokio::test]
async fn order_svc_down_means_no_verdict() {
    bounded(async {
        let mut s = stack().await;
        let (order, transaction_id) = s.paid_at_wechat(2500).await;
        s.order_svc.take().unwrap().stop().await.unwrap();
        let status = s
            .confirm(signed(&paid_notification(&order.id, 2500, &transaction_id)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    })
    .await;
}
