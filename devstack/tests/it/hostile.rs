//! Hostile bodies through the whole stack: FAIL, nothing changes, the gateway keeps serving.
//! And a gateway taken over: its token opens neither order-svc nor pay-svc's methods other
//! than ConfirmPayment.

use std::net::SocketAddr;

use order_svc::testing::Backend;
use paynotify::{
    auth::AttachBearer,
    proto::{
        order::v1::{MarkPaidRequest, order_service_client::OrderServiceClient},
        pay::v1::{
            CreateNativePayRequest, QueryOrderRequest, pay_service_client::PayServiceClient,
        },
    },
};
use tonic::transport::Channel;

use crate::support::*;

#[tokio::test]
async fn hostile_bodies_get_fail_and_change_nothing() {
    let stack = start(Backend::Sqlite).await;
    let order = new_order(&stack, 100).await;
    let genuine = sign(&paid_notification(&stack, &order).await);

    // The genuine notification wrapped in each attack.
    let inner = genuine
        .trim_start_matches("<xml>")
        .trim_end_matches("</xml>");
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("doctype + external entity", format!("<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml>{inner}<attach>&x;</attach></xml>").into_bytes()),
        ("internal entity expansion", format!("<!DOCTYPE xml [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\">]><xml>{inner}</xml>").into_bytes()),
        ("over 64 KiB", format!("<xml>{inner}<attach>{}</attach></xml>", "x".repeat(70_000)).into_bytes()),
        ("not xml", b"return_code=SUCCESS".to_vec()),
        ("json", b"{\"return_code\":\"SUCCESS\",\"out_trade_no\":\"1\"}".to_vec()),
        ("empty", Vec::new()),
        ("duplicate field", format!("<xml>{inner}<total_fee>1</total_fee></xml>").into_bytes()),
        ("nested", format!("<xml>{inner}<attach><x>1</x></attach></xml>").into_bytes()),
    ];
    for (name, body) in bodies {
        let (status, reply) = post(&stack, body).await;
        assert!(is_fail(&reply), "{name}: {status} {reply}");
        assert!(
            (400..500).contains(&status) || status == 200,
            "{name}: {status}"
        );
    }
    assert_untouched(&stack, &order.id).await;

    let (_, reply) = post(&stack, genuine).await;
    assert!(is_success(&reply), "{reply}");
}

/// Whoever takes the gateway over holds its token (pay-svc's GATEWAY_AUTH_TOKEN). It opens
/// neither order-svc's MarkPaid (past pay-svc's signature check and orderquery) nor pay-svc's
/// CreateNativePay and QueryOrder; the genuine payment still goes gateway → pay-svc →
/// order-svc, each hop on its own token.
#[tokio::test]
async fn the_gateways_token_opens_only_confirm_payment() {
    let stack = start(Backend::Sqlite).await;
    let order = new_order(&stack, 2_999).await;
    let notification = paid_notification(&stack, &order).await;

    let gateways_token = stack.config.gateway_auth_token.clone().unwrap();
    let bearer = || AttachBearer::new(Some(&gateways_token)).unwrap();
    let channel = |addr: SocketAddr| {
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy()
    };
    let refused = OrderServiceClient::with_interceptor(channel(stack.order_svc), bearer())
        .mark_paid(MarkPaidRequest {
            order_id: order.id.clone(),
            transaction_id: notification.transaction_id.clone(),
            amount_fen: order.pay_money,
            time_end: "20240101120000".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");

    let orderqueries = orderquery_calls(&stack).await;
    let mut pay = PayServiceClient::with_interceptor(channel(stack.pay_svc), bearer());
    let denied = pay
        .create_native_pay(CreateNativePayRequest {
            out_trade_no: order.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    let denied = pay
        .query_order(QueryOrderRequest {
            out_trade_no: order.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert_eq!(orderquery_calls(&stack).await, orderqueries);
    assert_untouched(&stack, &order.id).await;

    let (_, reply) = post(&stack, sign(&notification)).await;
    assert!(is_success(&reply), "{reply}");
    assert_paid_once(&stack, &order.id, &notification.transaction_id).await;
}
