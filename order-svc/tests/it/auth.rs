//! Internal calls need the bearer token; health and reflection stay open for probes and
//! grpcurl discovery.

use order_svc::testing::{Backend, TestDatabase, TestServer};
use paynotify::{
    auth::AttachBearer,
    proto::order::v1::{GetOrderRequest, order_service_client::OrderServiceClient},
};
use secrecy::SecretString;
use tonic::{Code, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const TOKEN: &str = "order-svc-test-token-0123456789";

#[tokio::test]
async fn calls_without_the_right_token_are_unauthenticated() -> anyhow::Result<()> {
    let database = TestDatabase::create(Backend::Sqlite).await?;
    let mut config = order_svc::Config::for_database(database.url())?;
    config.grpc_auth_token = Some(SecretString::from(TOKEN));
    let server = TestServer::start_with(config).await?;
    let channel = Channel::from_shared(server.endpoint())?.connect().await?;
    let get = || GetOrderRequest { id: "nope".into() };

    let refused = OrderServiceClient::new(channel.clone())
        .get_order(get())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    let wrong = AttachBearer::new(Some(&SecretString::from("order-svc-wrong-token-000000")))?;
    let refused = OrderServiceClient::with_interceptor(channel.clone(), wrong)
        .get_order(get())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(!refused.message().contains(TOKEN));

    // With the token the call gets through to the service (which knows no such order).
    let right = AttachBearer::new(Some(&SecretString::from(TOKEN)))?;
    let passed = OrderServiceClient::with_interceptor(channel.clone(), right)
        .get_order(get())
        .await
        .unwrap_err();
    assert_eq!(passed.code(), Code::NotFound);

    // Health needs no token.
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "order.v1.OrderService".into(),
        })
        .await?;
    assert_eq!(health.into_inner().status, 1);
    server.stop().await
}
