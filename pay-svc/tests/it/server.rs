//! What every pay-svc serves besides PayService: health (open, for probes) and the bearer
//! token on the business calls when one is configured; the gateway's own token opens
//! ConfirmPayment only; and the token its callers hold does not open order-svc.

use paynotify::proto::{
    order::v1::{MarkPaidRequest, OrderState, order_service_client::OrderServiceClient},
    pay::v1::{
        ConfirmPaymentRequest, CreateNativePayRequest, NotifyOutcome, QueryOrderRequest,
        pay_service_client::PayServiceClient,
    },
};
use tonic::{metadata::MetadataValue, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::support::{
    GATEWAY_TOKEN, ORDER_TOKEN, TOKEN, bearer, bounded, paid_notification, signed, stack,
    stack_with,
};

fn return_fail() -> ConfirmPaymentRequest {
    ConfirmPaymentRequest {
        fields: [("return_code".to_owned(), "FAIL".to_owned())].into(),
    }
}

#[tokio::test]
async fn business_calls_need_the_token_and_health_does_not() {
    bounded(async {
        let s = stack().await;
        let mut anonymous = PayServiceClient::new(s.pay_channel.clone());

        let refused = anonymous.confirm_payment(return_fail()).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);

        let mut wrong = tonic::Request::new(return_fail());
        wrong.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from("Bearer not-the-token-0123456789").unwrap(),
        );
        let refused = anonymous.confirm_payment(wrong).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert!(!refused.message().contains(TOKEN));

        let mut right = tonic::Request::new(return_fail());
        right.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {TOKEN}")).unwrap(),
        );
        let response = anonymous.confirm_payment(right).await.unwrap().into_inner();
        assert_eq!(response.outcome(), NotifyOutcome::ReturnFail);

        let mut health = HealthClient::new(s.pay_channel.clone());
        for service in ["", "pay.v1.PayService"] {
            let status = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(status.status(), ServingStatus::Serving, "{service:?}");
        }
    })
    .await;
}

/// Calls `path` with an empty message and the given token; the status it ends with.
#[allow(clippy::unwrap_used)]
async fn status_of(channel: Channel, path: &str, token: &str) -> tonic::Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(());
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    let path = http::uri::PathAndQuery::try_from(path).unwrap();
    match grpc
        .unary(request, path, tonic_prost::ProstCodec::<(), ()>::default())
        .await
    {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

/// Deny by default: every PayService method in the service's own descriptor but
/// ConfirmPayment, and one it does not have (yet), refuses the gateway's token before it
/// looks at the message; GRPC_AUTH_TOKEN gets past that check to each method's own answer.
#[tokio::test]
async fn the_gateways_token_opens_no_other_method_present_or_future() {
    use prost::Message;
    bounded(async {
        let s = stack().await;
        let descriptors =
            prost_types::FileDescriptorSet::decode(paynotify::proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut paths: Vec<String> = descriptors
            .file
            .iter()
            .filter(|file| file.package() == "pay.v1")
            .flat_map(|file| &file.service)
            .filter(|service| service.name() == "PayService")
            .flat_map(|service| &service.method)
            .map(|method| format!("/pay.v1.PayService/{}", method.name()))
            .filter(|path| !pay_svc::server::GATEWAY_METHODS.contains(&path.as_str()))
            .collect();
        assert!(
            paths.len() >= 2,
            "CreateNativePay and QueryOrder at least: {paths:?}"
        );
        paths.push("/pay.v1.PayService/AMethodAddedLater".into());
        for path in &paths {
            let code = status_of(s.pay_channel.clone(), path, GATEWAY_TOKEN).await;
            assert_eq!(code, tonic::Code::PermissionDenied, "{path}");
            let code = status_of(s.pay_channel.clone(), path, TOKEN).await;
            assert_ne!(code, tonic::Code::PermissionDenied, "{path}");
            assert_ne!(code, tonic::Code::Unauthenticated, "{path}");
        }
        let stats = s.sim.stats().await.unwrap();
        assert_eq!(
            stats.unifiedorder_calls, 0,
            "an empty CreateNativePay is invalid"
        );
    })
    .await;
}

/// Whoever takes the internet-facing gateway over holds its token (GATEWAY_AUTH_TOKEN). It
/// carries a notification through ConfirmPayment, and nothing else: CreateNativePay and
/// QueryOrder answer PERMISSION_DENIED without calling WeChat, while GRPC_AUTH_TOKEN opens all
/// three and any other token none.
#[tokio::test]
async fn the_gateways_token_opens_confirm_payment_only() {
    bounded(async {
        let mut s = stack().await;
        let mut as_the_gateway =
            PayServiceClient::with_interceptor(s.pay_channel.clone(), bearer(GATEWAY_TOKEN));
        let order = s.create_order(2_999).await;
        let create = || CreateNativePayRequest {
            out_trade_no: order.id.clone(),
            ..CreateNativePayRequest::default()
        };
        let query = || QueryOrderRequest {
            out_trade_no: order.id.clone(),
            ..QueryOrderRequest::default()
        };

        let denied = as_the_gateway
            .create_native_pay(create())
            .await
            .unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
        assert!(
            denied.message().contains("GATEWAY_AUTH_TOKEN"),
            "{denied:?}"
        );
        assert!(!denied.message().contains(GATEWAY_TOKEN), "{denied:?}");
        let denied = as_the_gateway.query_order(query()).await.unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
        let stats = s.sim.stats().await.unwrap();
        assert_eq!(
            (stats.unifiedorder_calls, stats.orderquery_calls),
            (0, 0),
            "WeChat was called"
        );

        // GRPC_AUTH_TOKEN opens all three.
        let native = s
            .pay
            .create_native_pay(create())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(native.total_fee, 2_999);
        let paid = s.sim.pay(&order.id, false).await.unwrap();
        let queried = s.pay.query_order(query()).await.unwrap().into_inner();
        assert_eq!(queried.trade_state, "SUCCESS", "{queried:?}");

        // The gateway's token carries the notification through.
        let notification = paid_notification(&order.id, order.pay_money, &paid.transaction_id);
        let fields = || ConfirmPaymentRequest {
            fields: signed(&notification).into_iter().collect(),
        };
        let confirmed = as_the_gateway
            .confirm_payment(fields())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(confirmed.outcome(), NotifyOutcome::Paid, "{confirmed:?}");
        assert_eq!(s.order(&order.id).await.state(), OrderState::Paid);
        let again = s.pay.confirm_payment(fields()).await.unwrap().into_inner();
        assert_eq!(again.outcome(), NotifyOutcome::Duplicate, "{again:?}");

        // Any other token, or none, is still UNAUTHENTICATED, not PERMISSION_DENIED.
        for token in [ORDER_TOKEN, "not-the-token-0123456789"] {
            let mut other =
                PayServiceClient::with_interceptor(s.pay_channel.clone(), bearer(token));
            for refused in [
                other.create_native_pay(create()).await.unwrap_err(),
                other.query_order(query()).await.unwrap_err(),
                other.confirm_payment(fields()).await.unwrap_err(),
            ] {
                assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
            }
        }
        let mut anonymous = PayServiceClient::new(s.pay_channel.clone());
        let refused = anonymous.create_native_pay(create()).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    })
    .await;
}

/// A deployment whose gateway has no token of its own yet (GATEWAY_AUTH_TOKEN unset) keeps
/// working: GRPC_AUTH_TOKEN opens every method, and no other token does.
#[tokio::test]
async fn without_a_gateway_token_grpc_auth_token_still_opens_every_method() {
    bounded(async {
        let mut s = stack_with(|config| config.gateway_auth_token = None).await;
        let order = s.create_native_order(1_500).await;
        let query = QueryOrderRequest {
            out_trade_no: order.id.clone(),
            ..QueryOrderRequest::default()
        };
        let queried = s.pay.query_order(query.clone()).await.unwrap().into_inner();
        assert_eq!(queried.trade_state, "NOTPAY", "{queried:?}");
        let mut as_a_gateway =
            PayServiceClient::with_interceptor(s.pay_channel.clone(), bearer(GATEWAY_TOKEN));
        let refused = as_a_gateway.query_order(query).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    })
    .await;
}

/// The tokens pay-svc's callers hold, the gateway's (GATEWAY_AUTH_TOKEN) and GRPC_AUTH_TOKEN
/// (the gateway's too while it has none of its own), are refused by order-svc: whoever holds
/// them cannot mark an order paid directly, past the signature check and orderquery. The
/// payment still goes through pay-svc, which calls order-svc with its own token.
#[tokio::test]
async fn the_callers_token_does_not_open_order_svc() {
    bounded(async {
        let mut s = stack().await;
        let (order, transaction_id) = s.paid_at_wechat(2_999).await;

        let order_svc = s.order_svc.as_ref().unwrap().endpoint();
        let channel = Channel::from_shared(order_svc)
            .unwrap()
            .connect()
            .await
            .unwrap();
        for token in [GATEWAY_TOKEN, TOKEN] {
            let mut as_a_caller =
                OrderServiceClient::with_interceptor(channel.clone(), bearer(token));
            let refused = as_a_caller
                .mark_paid(MarkPaidRequest {
                    order_id: order.id.clone(),
                    transaction_id: transaction_id.clone(),
                    amount_fen: order.pay_money,
                    time_end: "20240101120000".into(),
                })
                .await
                .unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
        }
        assert_eq!(s.order(&order.id).await.state(), OrderState::Unpaid);
        assert!(s.logs(&order.id).await.is_empty());

        let notification = paid_notification(&order.id, order.pay_money, &transaction_id);
        let confirmed = s.confirm(signed(&notification)).await.unwrap();
        assert_eq!(confirmed.outcome(), NotifyOutcome::Paid, "{confirmed:?}");
        let paid = s.order(&order.id).await;
        assert_eq!(paid.state(), OrderState::Paid, "{paid:?}");
        assert_eq!(paid.transaction_id, transaction_id);
    })
    .await;
}

#[tokio::test]
async fn shutdown_reports_not_serving_and_ends_despite_a_health_watcher() {
    bounded(async {
        let s = stack_with(|config| config.shutdown_grace_ms = 300).await;
        let mut health = HealthClient::new(s.pay_channel.clone());
        let mut watch = health
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let first = watch.message().await.unwrap().unwrap();
        assert_eq!(first.status(), ServingStatus::Serving);

        let started = tokio::time::Instant::now();
        let stopping = tokio::spawn(s.pay_svc.stop());
        let next = watch.message().await.unwrap().unwrap();
        assert_eq!(next.status(), ServingStatus::NotServing);
        stopping.await.unwrap();
        // The watcher's stream never ends on its own: the grace bounds the drain.
        assert!(started.elapsed() < std::time::Duration::from_secs(3));
    })
    .await;
}

#[tokio::test]
async fn reflection_lists_the_services_in_both_versions() {
    use tonic_reflection::pb::{v1, v1alpha};
    bounded(async {
        let s = stack().await;
        let request = v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let mut v1_client =
            v1::server_reflection_client::ServerReflectionClient::new(s.pay_channel.clone());
        let mut answers = v1_client
            .server_reflection_info(futures::stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
            answers.message().await.unwrap().unwrap().message_response
        else {
            panic!("not a service list");
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"pay.v1.PayService"), "{names:?}");
        assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

        // grpcurl 1.8 asks v1alpha.
        let request = v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        };
        let mut alpha =
            v1alpha::server_reflection_client::ServerReflectionClient::new(s.pay_channel.clone());
        let mut answers = alpha
            .server_reflection_info(futures::stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        assert!(answers.message().await.unwrap().is_some());
    })
    .await;
}

/// A ConfirmPayment larger than any notification the gateway can forward is refused before it
/// is decoded, as is an oversized health Check (open to anyone); the connection serves on.
#[tokio::test]
async fn an_oversized_message_is_refused_and_the_connection_serves_on() {
    bounded(async {
        let mut s = stack().await;
        let too_big = "x".repeat(paynotify::grpc_server::MAX_DECODING_MESSAGE_SIZE);
        let oversized = ConfirmPaymentRequest {
            fields: [("return_code".to_owned(), too_big.clone())].into(),
        };
        let refused = s.pay.confirm_payment(oversized).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}");

        let mut health = HealthClient::new(s.pay_channel.clone());
        let refused = health
            .check(HealthCheckRequest { service: too_big })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}");

        let answer = s.pay.confirm_payment(return_fail()).await.unwrap();
        assert_eq!(answer.into_inner().outcome(), NotifyOutcome::ReturnFail);
    })
    .await;
}
