//! What real WeChat sends and the simulator now reproduces, end to end through pay-svc: a
//! payment partly made with a coupon (cash_fee < total_fee, SPEC §1.2/§7.2: the order is paid
//! with its total_fee) and a field WeChat added later, signed with the rest (SPEC §1.2/§2.1),
//! in the notification and in the orderquery answer that confirms it. The notifications are
//! the simulator's own, read from its control API and handed to ConfirmPayment as the
//! gateway would.

use std::time::Duration;

use paynotify::{
    proto::{order::v1::OrderState, pay::v1::NotifyOutcome},
    wxpay::{Fields, xml},
};
use wxpay_sim::{Faults, PayRequest, UNKNOWN_FIELD};

use crate::support::{Stack, bounded, reconciling_every_second, stack, stack_with};

/// The notification the simulator would deliver for `out_trade_no`, as the gateway parses it.
async fn wechat_notification(s: &Stack, out_trade_no: &str) -> Fields {
    let notification = s
        .sim
        .notification(out_trade_no)
        .await
        .expect("notification");
    xml::parse(notification.body.as_bytes()).expect("the simulator's XML parses")
}

/// Pays `out_trade_no` at WeChat without a notification, `coupon_fee` of it with a coupon.
async fn pay_with_coupon(s: &Stack, out_trade_no: &str, coupon_fee: i64) -> String {
    let request = PayRequest {
        notify: false,
        coupon_fee: Some(coupon_fee),
        ..PayRequest::new(out_trade_no)
    };
    s.sim
        .pay_with(&request)
        .await
        .expect("sim pay")
        .transaction_id
}

async fn switch_on_unknown_field(s: &Stack) {
    let faults = Faults {
        unknown_field: true,
        ..Faults::default()
    };
    s.sim.set_faults(&faults).await.expect("set faults");
}

#[tokio::test]
async fn a_coupon_payment_is_paid_with_its_total_fee() {
    bounded(async {
        let mut s = stack().await;
        let order = s.create_native_order(2500).await;
        let transaction_id = pay_with_coupon(&s, &order.id, 500).await;
        let fields = wechat_notification(&s, &order.id).await;
        assert_eq!(fields["total_fee"], "2500");
        assert_eq!(fields["cash_fee"], "2000");
        assert_eq!(fields["coupon_fee"], "500");

        let response = s.confirm(fields).await.unwrap();
        assert_eq!(response.outcome(), NotifyOutcome::Paid, "{response:?}");
        assert!(response.acknowledge);
        let paid = s.order(&order.id).await;
        assert_eq!(paid.state(), OrderState::Paid);
        assert_eq!(paid.transaction_id, transaction_id);
        let logs = s.logs(&order.id).await;
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].money, 2500);
        assert_eq!(s.orderquery_calls().await, 1);
    })
    .await;
}

#[tokio::test]
async fn a_notification_with_an_unknown_signed_field_is_accepted() {
    bounded(async {
        let mut s = stack().await;
        switch_on_unknown_field(&s).await;
        let (name, value) = UNKNOWN_FIELD;
        let (order, transaction_id) = s.paid_at_wechat(1200).await;
        let fields = wechat_notification(&s, &order.id).await;
        assert_eq!(fields[name], value);

        // Dropping the field a receiver does not know breaks WeChat's signature.
        let mut known_only = fields.clone();
        known_only.remove(name);
        let response = s.confirm(known_only).await.unwrap();
        assert_eq!(
            response.outcome(),
            NotifyOutcome::BadSignature,
            "{response:?}"
        );
        assert_eq!(s.order(&order.id).await.state(), OrderState::Unpaid);

        // The whole notification verifies, and so does orderquery's answer, which carries the
        // field too.
        let response = s.confirm(fields).await.unwrap();
        assert_eq!(response.outcome(), NotifyOutcome::Paid, "{response:?}");
        assert!(response.acknowledge);
        let paid = s.order(&order.id).await;
        assert_eq!(paid.state(), OrderState::Paid);
        assert_eq!(paid.transaction_id, transaction_id);
        assert_eq!(s.orderquery_calls().await, 1);
    })
    .await;
}

#[tokio::test]
async fn reconciliation_pays_a_coupon_payment_queried_with_an_unknown_field() {
    bounded(async {
        let mut s = stack_with(reconciling_every_second).await;
        switch_on_unknown_field(&s).await;
        // Paid partly with a coupon, notification never sent: only orderquery tells.
        let order = s.create_native_order(1500).await;
        let transaction_id = pay_with_coupon(&s, &order.id, 1).await;

        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while s.order(&order.id).await.state() != OrderState::Paid {
            assert!(
                tokio::time::Instant::now() < deadline,
                "reconciliation did not pay the order in time"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(s.order(&order.id).await.transaction_id, transaction_id);
        let logs = s.logs(&order.id).await;
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].money, 1500);
    })
    .await;
}
