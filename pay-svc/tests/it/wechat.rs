//! CreateNativePay and QueryOrder against the simulator, and what happens when WeChat cannot
//! be reached: no verdict (UNAVAILABLE), so the gateway answers FAIL and WeChat resends.

use paynotify::proto::{
    order::v1::OrderState,
    pay::v1::{CreateNativePayRequest, QueryOrderRequest},
};

use crate::support::{bounded, paid_notification, signed, stack, stack_with};

/// Nothing listens there (the discard port), so connecting is refused at once.
const DEAD_WECHAT: &str = "http://127.0.0.1:9";

#[tokio::test]
async fn create_native_pay_prices_the_order_from_order_svc() {
    bounded(async {
        let mut s = stack().await;
        let order = s.create_order(4321).await;
        let created = s
            .pay
            .create_native_pay(CreateNativePayRequest {
                out_trade_no: order.id.clone(),
                body: "一杯茶".into(),
                client_ip: "10.1.2.3".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(created.code_url.starts_with("weixin://"), "{created:?}");
        assert!(!created.prepay_id.is_empty());
        assert_eq!(created.total_fee, 4321);

        let at_wechat = s.sim.order(&order.id).await.unwrap();
        assert_eq!(at_wechat.total_fee, 4321);
        assert_eq!(at_wechat.trade_state, wxpay_sim::TradeState::NotPay);
        assert_eq!(at_wechat.notify_url, "http://127.0.0.1:9010/wxpay/notify");
    })
    .await;
}

#[tokio::test]
async fn create_native_pay_refuses_missing_and_paid_orders() {
    bounded(async {
        let mut s = stack().await;
        let missing = s
            .pay
            .create_native_pay(CreateNativePayRequest {
                out_trade_no: "NOSUCHORDER2".into(),
                ..CreateNativePayRequest::default()
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), tonic::Code::FailedPrecondition);

        let (order, transaction_id) = s.paid_at_wechat(100).await;
        s.confirm(signed(&paid_notification(&order.id, 100, &transaction_id)))
            .await
            .unwrap();
        assert_eq!(s.order(&order.id).await.state(), OrderState::Paid);
        let paid = s
            .pay
            .create_native_pay(CreateNativePayRequest {
                out_trade_no: order.id.clone(),
                ..CreateNativePayRequest::default()
            })
            .await
            .unwrap_err();
        assert_eq!(paid.code(), tonic::Code::FailedPrecondition);

        let invalid = s
            .pay
            .create_native_pay(CreateNativePayRequest {
                out_trade_no: "has space".into(),
                ..CreateNativePayRequest::default()
            })
            .await
            .unwrap_err();
        assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    })
    .await;
}

#[tokio::test]
async fn query_order_is_typed() {
    bounded(async {
        let mut s = stack().await;
        let (order, transaction_id) = s.paid_at_wechat(777).await;
        let by_out_trade_no = s
            .pay
            .query_order(QueryOrderRequest {
                out_trade_no: order.id.clone(),
                ..QueryOrderRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(by_out_trade_no.trade_state, "SUCCESS");
        assert_eq!(by_out_trade_no.total_fee, 777);
        assert_eq!(by_out_trade_no.transaction_id, transaction_id);
        assert_eq!(by_out_trade_no.time_end.len(), 14);

        let by_transaction = s
            .pay
            .query_order(QueryOrderRequest {
                transaction_id: transaction_id.clone(),
                ..QueryOrderRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(by_transaction.out_trade_no, order.id);

        let unknown = s
            .pay
            .query_order(QueryOrderRequest {
                out_trade_no: "NOSUCHORDER3".into(),
                ..QueryOrderRequest::default()
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);
    })
    .await;
}

#[tokio::test]
async fn wechat_unreachable_means_no_verdict() {
    bounded(async {
        let mut s = stack_with(|config| {
            config.wxpay_api_base = DEAD_WECHAT.into();
        })
        .await;
        let order = s.create_order(2500).await;
        let status = s
            .confirm(signed(&paid_notification(
                &order.id,
                2500,
                "4200000000000005",
            )))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert_eq!(s.order(&order.id).await.state(), OrderState::Unpaid);
    })
    .await;
}

#[tokio::test]
async fn the_backup_domain_takes_over_when_the_main_one_is_down() {
    bounded(async {
        let mut s = stack_with(|config| {
            config.wxpay_api_backup_base = Some(config.wxpay_api_base.clone());
            config.wxpay_api_base = DEAD_WECHAT.into();
        })
        .await;
        let (order, transaction_id) = s.paid_at_wechat(300).await;
        let response = s
            .confirm(signed(&paid_notification(&order.id, 300, &transaction_id)))
            .await
            .unwrap();
        assert!(response.acknowledge, "{response:?}");
        assert_eq!(s.order(&order.id).await.state(), OrderState::Paid);
    })
    .await;
}
