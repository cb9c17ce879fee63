//! The gateway → pay-svc hop over TLS: an `https://` PAY_SVC_URL is dialled with TLS and
//! checked against GRPC_TLS_CA_FILE; a pay-svc whose certificate that CA did not sign gets
//! no notification (FAIL ack, so WeChat retries).

use std::{path::Path, process::Command};

use paynotify::proto::pay::v1::{
    ConfirmPaymentRequest, ConfirmPaymentResponse, CreateNativePayRequest, CreateNativePayResponse,
    NotifyOutcome, QueryOrderRequest, QueryOrderResponse,
    pay_service_server::{PayService, PayServiceServer},
};
use tokio_util::sync::CancellationToken;
use tonic::{
    Request, Response, Status, codegen::tokio_stream::wrappers::TcpListenerStream,
    transport::ServerTlsConfig,
};

use crate::{NOTIFICATION, SUCCESS_ACK, is_fail_ack, pki::TestPki};

/// A pay-svc that acknowledges every notification as paid.
struct AlwaysPaid;

#[tonic::async_trait]
impl PayService for AlwaysPaid {
    async fn confirm_payment(
        &self,
        _: Request<ConfirmPaymentRequest>,
    ) -> Result<Response<ConfirmPaymentResponse>, Status> {
        Ok(Response::new(ConfirmPaymentResponse {
            outcome: NotifyOutcome::Paid as i32,
            acknowledge: true,
            ..Default::default()
        }))
    }

    async fn create_native_pay(
        &self,
        _: Request<CreateNativePayRequest>,
    ) -> Result<Response<CreateNativePayResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }

    async fn query_order(
        &self,
        _: Request<QueryOrderRequest>,
    ) -> Result<Response<QueryOrderResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
}

/// Serves [`AlwaysPaid`] over TLS until `stop`; returns its `https://localhost:<port>`.
async fn tls_pay_svc(tls: ServerTlsConfig, stop: CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tonic::transport::Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(PayServiceServer::new(AlwaysPaid))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            stop.cancelled().await
        });
    tokio::spawn(server);
    format!("https://localhost:{port}")
}

/// A gateway in front of `pay_svc_url`, trusting `ca`; returns its notify URL.
async fn gateway(pay_svc_url: String, ca: &Path, stop: CancellationToken) -> String {
    let mut config = gateway::Config::for_pay_svc(pay_svc_url);
    config.grpc_tls_ca_file = Some(ca.to_owned());
    config.upstream_timeout_ms = 2_000;
    let server = gateway::bind(config).await.unwrap();
    let url = format!("http://{}/wxpay/notify", server.local_addr());
    tokio::spawn(server.run_until(async move { stop.cancelled().await }));
    url
}

async fn post(url: &str) -> String {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "text/xml")
        .body(NOTIFICATION)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn pay_svc_over_tls_is_trusted_through_the_ca_file() {
    let pki = TestPki::new();
    let stop = CancellationToken::new();
    let tls = paynotify::tls::server_config(Some(&pki.cert), Some(&pki.key))
        .unwrap()
        .unwrap();
    let pay_svc = tls_pay_svc(tls, stop.clone()).await;

    let trusting = gateway(pay_svc.clone(), &pki.ca, stop.clone()).await;
    assert_eq!(post(&trusting).await, SUCCESS_ACK);

    let other = TestPki::new();
    let distrusting = gateway(pay_svc, &other.ca, stop.clone()).await;
    let reply = post(&distrusting).await;
    assert!(is_fail_ack(&reply), "{reply}");
    stop.cancel();
}

#[test]
fn an_unreadable_or_empty_ca_file_stops_the_start_naming_it() {
    let pki = TestPki::new();
    let garbage = pki.file("garbage.pem", "not a certificate\n");
    for ca in [Path::new("/nonexistent/ca.pem"), &garbage] {
        let output = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .env_clear()
            .env("GRPC_ALLOW_UNAUTHENTICATED", "true")
            .env("GRPC_TLS_CA_FILE", ca)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.starts_with("error: invalid setting GRPC_TLS_CA_FILE: "),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}
