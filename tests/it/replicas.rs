//! `Replicas` over real sockets: a replica that takes a call and dies before answering (a
//! crash or `kill -9` mid-request) costs nothing but a retry on the next replica, since every
//! call made through it is idempotent.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use paynotify::{replicas::Replicas, tls::ClientTls};
use tokio::{io::AsyncReadExt, net::TcpListener};
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Accepts connections, reads whatever the client sends for a moment (the HTTP/2 preface and
/// the request), then closes without a word.
async fn dying_replica() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let until = tokio::time::Instant::now() + Duration::from_millis(200);
                while let Ok(Ok(n)) = tokio::time::timeout_at(until, socket.read(&mut buf)).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    url
}

async fn healthy_replica() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    url
}

#[tokio::test]
async fn a_call_cut_off_by_a_dying_replica_goes_to_the_next() {
    let urls = [dying_replica().await, healthy_replica().await];
    let replicas = Replicas::connect_lazy(
        "TEST_URL",
        &urls,
        Duration::from_secs(1),
        Duration::from_secs(5),
        &ClientTls::default(),
    )
    .unwrap();
    // Round-robin starts at the dying replica; every call must still succeed.
    for _ in 0..4 {
        let answer = replicas
            .call(|channel| async move {
                HealthClient::new(channel)
                    .check(HealthCheckRequest::default())
                    .await
            })
            .await;
        assert!(answer.is_ok(), "{answer:?}");
    }
}
