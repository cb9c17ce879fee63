//! Start-up and shutdown as a probe or an orchestrator sees them; independent of the backend,
//! so SQLite only.

use std::time::{Duration, Instant};

use order_svc::testing::{Backend, TestDatabase, TestServer};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_watchers_not_serving_and_is_not_held_open_by_them() -> anyhow::Result<()> {
    let database = TestDatabase::create(Backend::Sqlite).await?;
    let server = TestServer::start(database.url()).await?;
    let channel = tonic::transport::Endpoint::from_shared(server.endpoint())?
        .connect()
        .await?;
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: "order.v1.OrderService".into(),
        })
        .await?
        .into_inner();
    let first = watch.message().await?.map(|r| r.status());
    assert_eq!(first, Some(ServingStatus::Serving));

    let started = Instant::now();
    let stopping = tokio::spawn(server.stop());
    let next = watch.message().await?.map(|r| r.status());

    assert_eq!(next, Some(ServingStatus::NotServing));
    // A watch stream never ends by itself; the shutdown grace (2 s in tests) bounds the wait.
    tokio::time::timeout(Duration::from_secs(10), stopping).await???;
    assert!(started.elapsed() < Duration::from_secs(10));
    Ok(())
}
