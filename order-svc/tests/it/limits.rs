// Setup failures panic, like the assertions.
#![allow(clippy::unwrap_used)]
//! The limits order-svc holds every caller to (`paynotify::grpc_server`), over a real socket:
//! a message larger than any legitimate one is refused before it is decoded, health (open to
//! anyone) included, and the connection goes on serving; and the server announces how many
//! calls one connection may have open.

use order_svc::testing::{Backend, TestDatabase, TestServer};
use paynotify::grpc_server::{MAX_CONCURRENT_STREAMS, MAX_DECODING_MESSAGE_SIZE};
use paynotify::proto::order::v1::{
    CreateOrderRequest, GetOrderRequest, order_service_client::OrderServiceClient,
};
use tonic::{Code, codegen::http, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[tokio::test]
async fn an_oversized_message_is_refused_and_the_connection_serves_on() -> anyhow::Result<()> {
    let database = TestDatabase::create(Backend::Sqlite).await?;
    let server = TestServer::start(database.url()).await?;
    let channel = Channel::from_shared(server.endpoint())?.connect().await?;
    let mut orders = OrderServiceClient::new(channel.clone());
    let mut health = HealthClient::new(channel);

    let oversized = CreateOrderRequest {
        pay_money: 100,
        username: "x".repeat(MAX_DECODING_MESSAGE_SIZE),
        ..Default::default()
    };
    let refused = orders.create_order(oversized).await.unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");

    let refused = health
        .check(HealthCheckRequest {
            service: "x".repeat(MAX_DECODING_MESSAGE_SIZE),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");

    // Just under the limit the message is decoded, and the service itself answers (the name
    // is far too long for the column).
    let under = CreateOrderRequest {
        pay_money: 100,
        username: "x".repeat(MAX_DECODING_MESSAGE_SIZE - 16),
        ..Default::default()
    };
    let answered = orders.create_order(under).await.unwrap_err();
    assert_eq!(answered.code(), Code::InvalidArgument, "{answered:?}");

    // The same connection still serves ordinary calls.
    let created = orders
        .create_order(CreateOrderRequest {
            pay_money: 100,
            ..Default::default()
        })
        .await?
        .into_inner()
        .order
        .unwrap();
    let found = orders
        .get_order(GetOrderRequest {
            id: created.id.clone(),
        })
        .await?
        .into_inner()
        .order
        .unwrap();
    assert_eq!(found.id, created.id);
    let serving = health
        .check(HealthCheckRequest {
            service: "order.v1.OrderService".into(),
        })
        .await?;
    assert_eq!(serving.into_inner().status, 1);
    server.stop().await
}

#[tokio::test]
async fn a_connection_may_hold_a_bounded_number_of_calls() -> anyhow::Result<()> {
    let database = TestDatabase::create(Backend::Sqlite).await?;
    let server = TestServer::start(database.url()).await?;
    let socket = tokio::net::TcpStream::connect(server.addr()).await?;
    let (client, connection) = h2::client::handshake(socket).await?;
    let connection = tokio::spawn(connection);

    // Once a call has been answered, the server's SETTINGS have been read.
    let mut client = client.ready().await?;
    let request = http::Request::post(format!(
        "http://{}/grpc.health.v1.Health/Check",
        server.addr()
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(())?;
    let (response, _) = client.send_request(request, true)?;
    assert_eq!(response.await?.status(), http::StatusCode::OK);
    assert_eq!(
        client.current_max_send_streams(),
        MAX_CONCURRENT_STREAMS as usize
    );

    drop(client);
    connection.abort();
    server.stop().await
}
