//! The gateway → pay-svc hop over TLS: an `https://` PAY_SVC_URL is dialled with TLS and
//! checked against GRPC_TLS_CA_FILE; a pay-svc whose certificate that CA did not sign gets
//! no notification (FAIL ack, so WeChat retries).

use std::{path::Path, process::Command};

use paynotify::proto::pay::v1::NotifyOutcome;
use tokio_util::sync::CancellationToken;

use crate::{
    NOTIFICATION, SUCCESS_ACK,
    fake_pay_svc::{FakePaySvc, Script},
    is_fail_ack,
    pki::TestPki,
};

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
    let pay_svc =
        FakePaySvc::start_tls(Script::Verdict(NotifyOutcome::Paid, true, "paid"), tls).await;

    let trusting = gateway(pay_svc.https_url(), &pki.ca, stop.clone()).await;
    assert_eq!(post(&trusting).await, SUCCESS_ACK);
    assert_eq!(pay_svc.calls(), 1);

    // Refused at the handshake: pay-svc never sees the notification.
    let other = TestPki::new();
    let distrusting = gateway(pay_svc.https_url(), &other.ca, stop.clone()).await;
    let reply = post(&distrusting).await;
    assert!(is_fail_ack(&reply), "{reply}");
    assert_eq!(pay_svc.calls(), 1);
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
