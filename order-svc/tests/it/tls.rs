// Setup failures panic, like the assertions.
#![allow(clippy::unwrap_used)]
//! order-svc over TLS (GRPC_TLS_CERT_FILE + GRPC_TLS_KEY_FILE): a client that trusts the CA
//! gets through (with the token, which TLS does not replace); a plaintext client and one that
//! trusts another CA do not; half a TLS setting, or a bad file, stops the start naming it.

use std::{path::Path, process::Command, time::Duration};

use order_svc::testing::{Backend, TestDatabase, TestServer};
use paynotify::unary_body::{GrpcChannel, ending_with_last_frame};
use paynotify::{
    auth::AttachBearer,
    proto::order::v1::{
        CreateOrderRequest, GetOrderRequest, order_service_client::OrderServiceClient,
    },
    replicas::Replicas,
    tls::ClientTls,
};
use secrecy::SecretString;
use tonic::{Code, transport::Channel};

use crate::pki::TestPki;

const TOKEN: &str = "order-svc-tls-token-0123456789";
const BINARY: &str = env!("CARGO_BIN_EXE_order-svc");

/// An order-svc serving TLS with `pki`'s certificate, requiring [`TOKEN`].
async fn tls_server(pki: &TestPki, database: &TestDatabase) -> anyhow::Result<TestServer> {
    let mut config = order_svc::Config::for_database(database.url())?;
    config.grpc_auth_token = Some(SecretString::from(TOKEN));
    config.grpc_tls = paynotify::tls::server_config(Some(&pki.cert), Some(&pki.key))?;
    TestServer::start_with(config).await
}

fn bearer() -> AttachBearer {
    AttachBearer::new(Some(&SecretString::from(TOKEN))).unwrap()
}

/// A GetOrder for an order that does not exist over `channel`: NOT_FOUND means the call went
/// through TLS and the token check to the service.
async fn get_missing(channel: GrpcChannel) -> Result<(), tonic::Status> {
    let mut client = OrderServiceClient::with_interceptor(channel, bearer());
    let call = client.get_order(GetOrderRequest {
        id: "no-such-order".into(),
    });
    match tokio::time::timeout(Duration::from_secs(10), call).await {
        Ok(result) => result.map(drop),
        Err(_) => Err(tonic::Status::deadline_exceeded("test timeout")),
    }
}

#[tokio::test]
async fn a_client_trusting_the_ca_gets_through_with_the_token() -> anyhow::Result<()> {
    let pki = TestPki::new();
    let database = TestDatabase::create(Backend::Sqlite).await?;
    let server = tls_server(&pki, &database).await?;
    assert!(server.endpoint().starts_with("https://localhost:"));

    // The way pay-svc dials order-svc: Replicas with GRPC_TLS_CA_FILE.
    let tls = ClientTls::load(Some(&pki.ca))?;
    let by_ip = format!("https://127.0.0.1:{}", server.addr().port());
    let replicas = Replicas::connect_lazy(
        "ORDER_SVC_URL",
        &[server.endpoint(), by_ip],
        Duration::from_secs(1),
        Duration::from_secs(5),
        &tls,
    )?;
    // Twice, so both the host name and the IP address are dialled (round-robin).
    for _ in 0..2 {
        let created = replicas
            .call(|channel| async move {
                OrderServiceClient::with_interceptor(channel, bearer())
                    .create_order(CreateOrderRequest {
                        pay_money: 1,
                        ..Default::default()
                    })
                    .await
            })
            .await?
            .into_inner()
            .order
            .unwrap();
        let id = created.id.clone();
        let read = replicas
            .call(|channel| {
                let id = id.clone();
                async move {
                    OrderServiceClient::with_interceptor(channel, bearer())
                        .get_order(GetOrderRequest { id })
                        .await
                }
            })
            .await?
            .into_inner()
            .order
            .unwrap();
        assert_eq!(read.id, created.id);
    }

    // TLS does not replace the token.
    let channel = Channel::from_shared(server.endpoint())?
        .tls_config(tls.config())?
        .connect()
        .await?;
    let refused = OrderServiceClient::new(channel)
        .get_order(GetOrderRequest { id: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    server.stop().await
}

#[tokio::test]
async fn a_plaintext_client_is_refused() -> anyhow::Result<()> {
    let pki = TestPki::new();
    let database = TestDatabase::create(Backend::Sqlite).await?;
    let server = tls_server(&pki, &database).await?;

    let plaintext = format!("http://127.0.0.1:{}", server.addr().port());
    let outcome = match Channel::from_shared(plaintext)?.connect().await {
        Ok(channel) => get_missing(ending_with_last_frame(channel)).await,
        Err(error) => Err(tonic::Status::unavailable(error.to_string())),
    };
    let status = outcome.unwrap_err();
    assert_ne!(status.code(), Code::NotFound, "{status:?}");
    assert_ne!(status.code(), Code::DeadlineExceeded, "{status:?}");
    server.stop().await
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_is_refused() -> anyhow::Result<()> {
    let pki = TestPki::new();
    let database = TestDatabase::create(Backend::Sqlite).await?;
    let server = tls_server(&pki, &database).await?;

    // Trusts a CA of its own, not the one that signed the server's certificate.
    let other = TestPki::new();
    let replicas = Replicas::connect_lazy(
        "ORDER_SVC_URL",
        &[server.endpoint()],
        Duration::from_secs(1),
        Duration::from_secs(5),
        &ClientTls::load(Some(&other.ca))?,
    )?;
    let status = replicas.call(get_missing).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    // The system's trust store (no GRPC_TLS_CA_FILE) does not hold the test CA either; on a
    // machine without one the set-up itself fails.
    if let Ok(replicas) = Replicas::connect_lazy(
        "ORDER_SVC_URL",
        &[server.endpoint()],
        Duration::from_secs(1),
        Duration::from_secs(5),
        &ClientTls::default(),
    ) {
        let status = replicas.call(get_missing).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    server.stop().await
}

fn start_binary(env: &[(&str, &Path)]) -> (Option<i32>, String) {
    let output = Command::new(BINARY)
        .env_clear()
        .env("GRPC_AUTH_TOKEN", TOKEN)
        .env("METRICS_ADDR", "off")
        .env("DATABASE_URL", "sqlite::memory:")
        .env("ORDER_SVC_ADDR", "127.0.0.1:0")
        .envs(env.iter().map(|(name, path)| (name, path.as_os_str())))
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn half_a_tls_setting_or_a_bad_file_stops_the_start_naming_it() {
    let pki = TestPki::new();
    let other = TestPki::new();
    let garbage = pki.file(
        "garbage.key",
        "-----BEGIN PRIVATE KEY-----\nTOPSECRETKEYMATERIAL!!\n-----END PRIVATE KEY-----\n",
    );
    let empty = pki.file("empty.pem", "");
    let missing = Path::new("/nonexistent/server.pem");
    let cases: &[(&[(&str, &Path)], &str)] = &[
        (&[("GRPC_TLS_CERT_FILE", &pki.cert)], "GRPC_TLS_KEY_FILE"),
        (&[("GRPC_TLS_KEY_FILE", &pki.key)], "GRPC_TLS_CERT_FILE"),
        (
            &[
                ("GRPC_TLS_CERT_FILE", missing),
                ("GRPC_TLS_KEY_FILE", &pki.key),
            ],
            "GRPC_TLS_CERT_FILE",
        ),
        (
            &[
                ("GRPC_TLS_CERT_FILE", &empty),
                ("GRPC_TLS_KEY_FILE", &pki.key),
            ],
            "GRPC_TLS_CERT_FILE",
        ),
        // A key file given as the certificate: no certificate in it.
        (
            &[
                ("GRPC_TLS_CERT_FILE", &pki.key),
                ("GRPC_TLS_KEY_FILE", &pki.key),
            ],
            "GRPC_TLS_CERT_FILE",
        ),
        (
            &[
                ("GRPC_TLS_CERT_FILE", &pki.cert),
                ("GRPC_TLS_KEY_FILE", &garbage),
            ],
            "GRPC_TLS_KEY_FILE",
        ),
        // Another certificate's key.
        (
            &[
                ("GRPC_TLS_CERT_FILE", &pki.cert),
                ("GRPC_TLS_KEY_FILE", &other.key),
            ],
            "GRPC_TLS_KEY_FILE",
        ),
    ];
    let key_material = std::fs::read_to_string(&other.key).unwrap();
    let key_line = key_material.lines().nth(1).unwrap();
    for (env, setting) in cases {
        let (code, stderr) = start_binary(env);
        assert_eq!(code, Some(2), "{env:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!("error: {setting}: ")),
            "{env:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{env:?}: {stderr}");
        assert!(!stderr.contains("TOPSECRET"), "{stderr}");
        assert!(!stderr.contains(key_line), "{stderr}");
    }
}
