// Setup failures panic, like the assertions.
#![allow(clippy::unwrap_used)]
//! pay-svc with TLS on both of its hops: served over TLS to its callers (GRPC_TLS_CERT_FILE +
//! GRPC_TLS_KEY_FILE), and calling an order-svc that serves TLS at an `https://` ORDER_SVC_URL
//! whose CA is GRPC_TLS_CA_FILE. Half a TLS setting or a bad file stops the start naming it.

use std::{path::Path, process::Command, time::Duration};

use order_svc::testing::{Backend, TestDatabase, TestServer};
use paynotify::{
    proto::{
        order::v1::{CreateOrderRequest, order_service_client::OrderServiceClient},
        pay::v1::{CreateNativePayRequest, pay_service_client::PayServiceClient},
    },
    tls::ClientTls,
};
use secrecy::SecretString;
use tonic::transport::Channel;

use crate::pki::TestPki;
use crate::support::{ORDER_TOKEN, TOKEN, bearer, bounded};

const BINARY: &str = env!("CARGO_BIN_EXE_pay-svc");

async fn tls_channel(url: String, tls: &ClientTls) -> Channel {
    Channel::from_shared(url)
        .unwrap()
        .tls_config(tls.config())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// An in-process order-svc on SQLite that serves TLS with `pki`'s certificate and wants
/// [`ORDER_TOKEN`]. The database lives as long as the returned handle.
async fn tls_order_svc(pki: &TestPki) -> (TestDatabase, TestServer) {
    let db = TestDatabase::create(Backend::Sqlite).await.unwrap();
    let mut config = order_svc::Config::for_database(db.url()).unwrap();
    config.grpc_auth_token = Some(SecretString::from(ORDER_TOKEN));
    config.grpc_tls = paynotify::tls::server_config(Some(&pki.cert), Some(&pki.key)).unwrap();
    let order_svc = TestServer::start_with(config).await.unwrap();
    (db, order_svc)
}

#[tokio::test]
async fn both_hops_run_over_tls() {
    bounded(async {
        let pki = TestPki::new();
        let tls = ClientTls::load(Some(&pki.ca)).unwrap();
        let (_db, order_svc) = tls_order_svc(&pki).await;

        let sim = wxpay_sim::bind(wxpay_sim::Config {
            addr: ([127, 0, 0, 1], 0).into(),
            ..wxpay_sim::Config::default()
        })
        .await
        .unwrap();
        let sim_url = sim.base_url();
        let (stop_sim, sim_stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(sim.run_until(async {
            let _ = sim_stopped.await;
        }));

        let config = pay_svc::Config {
            addr: ([127, 0, 0, 1], 0).into(),
            order_svc_url: order_svc.endpoint(),
            wxpay_api_base: sim_url,
            reconcile_interval_secs: 0,
            wxpay_appid: wxpay_sim::DEMO_APPID.into(),
            wxpay_mch_id: wxpay_sim::DEMO_MCH_ID.into(),
            wxpay_api_key: wxpay_sim::DEMO_API_KEY.into(),
            grpc_auth_token: Some(SecretString::from(TOKEN)),
            order_svc_auth_token: Some(SecretString::from(ORDER_TOKEN)),
            grpc_tls_cert_file: Some(pki.cert.clone()),
            grpc_tls_key_file: Some(pki.key.clone()),
            grpc_tls_ca_file: Some(pki.ca.clone()),
            metrics_addr: paynotify::metrics::AdminAddr::OFF,
            ..pay_svc::Config::default()
        };
        let pay = pay_svc::bind(config).await.unwrap();
        let pay_url = format!("https://localhost:{}", pay.local_addr().port());
        let (stop_pay, pay_stopped) = tokio::sync::oneshot::channel::<()>();
        let pay_task = tokio::spawn(pay.run_until(async {
            let _ = pay_stopped.await;
        }));

        let order = OrderServiceClient::with_interceptor(
            tls_channel(order_svc.endpoint(), &tls).await,
            bearer(ORDER_TOKEN),
        )
        .create_order(CreateOrderRequest {
            pay_money: 2999,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();

        // CreateNativePay reads the order from order-svc (over TLS) before asking "WeChat".
        let mut pay_client = PayServiceClient::with_interceptor(
            tls_channel(pay_url.clone(), &tls).await,
            bearer(TOKEN),
        );
        let created = pay_client
            .create_native_pay(CreateNativePayRequest {
                out_trade_no: order.id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(created.total_fee, 2999);
        assert!(created.code_url.starts_with("weixin://"), "{created:?}");

        // pay-svc's own port refuses plaintext.
        let plaintext = format!("http://127.0.0.1:{}", pay_url.rsplit(':').next().unwrap());
        let refused = match Channel::from_shared(plaintext).unwrap().connect().await {
            Ok(channel) => {
                let mut client = PayServiceClient::with_interceptor(channel, bearer(TOKEN));
                let call = client.create_native_pay(CreateNativePayRequest {
                    out_trade_no: order.id.clone(),
                    ..Default::default()
                });
                tokio::time::timeout(Duration::from_secs(10), call)
                    .await
                    .unwrap()
                    .is_err()
            }
            Err(_) => true,
        };
        assert!(refused);

        let _ = stop_pay.send(());
        pay_task.await.unwrap().unwrap();
        let _ = stop_sim.send(());
        order_svc.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn an_order_svc_whose_ca_is_not_trusted_is_unavailable() {
    bounded(async {
        let pki = TestPki::new();
        let other = TestPki::new();
        let (_db, order_svc) = tls_order_svc(&pki).await;

        let orders_trusting = |ca: &std::path::Path| {
            pay_svc::orders::Orders::connect_lazy(
                &order_svc.endpoint(),
                Duration::from_secs(1),
                Duration::from_secs(5),
                pay_svc::Config::default().order_svc_retry(),
                Some(&SecretString::from(ORDER_TOKEN)),
                &ClientTls::load(Some(ca)).unwrap(),
            )
            .unwrap()
        };
        assert!(orders_trusting(&other.ca).get("any").await.is_err());
        assert_eq!(orders_trusting(&pki.ca).get("any").await.unwrap(), None);
        order_svc.stop().await.unwrap();
    })
    .await;
}

#[test]
fn half_a_tls_setting_or_a_bad_file_stops_the_start_naming_it() {
    let pki = TestPki::new();
    let garbage = pki.file("garbage.pem", "not a certificate\n");
    let missing = Path::new("/nonexistent/ca.pem");
    let cases: &[(&[(&str, &Path)], &str)] = &[
        (&[("GRPC_TLS_CERT_FILE", &pki.cert)], "GRPC_TLS_KEY_FILE"),
        (&[("GRPC_TLS_KEY_FILE", &pki.key)], "GRPC_TLS_CERT_FILE"),
        (&[("GRPC_TLS_CA_FILE", missing)], "GRPC_TLS_CA_FILE"),
        (&[("GRPC_TLS_CA_FILE", &garbage)], "GRPC_TLS_CA_FILE"),
    ];
    for (env, setting) in cases {
        let output = Command::new(BINARY)
            .env_clear()
            .env("GRPC_AUTH_TOKEN", TOKEN)
            .env("ORDER_SVC_AUTH_TOKEN", ORDER_TOKEN)
            .env("WXPAY_APPID", wxpay_sim::DEMO_APPID)
            .env("WXPAY_MCH_ID", wxpay_sim::DEMO_MCH_ID)
            .env("WXPAY_API_KEY", wxpay_sim::DEMO_API_KEY)
            .env("METRICS_ADDR", "off")
            .env("PAY_SVC_ADDR", "127.0.0.1:0")
            .envs(env.iter().map(|(name, path)| (name, path.as_os_str())))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!("error: {setting}: ")),
            "{env:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{env:?}: {stderr}");
    }
}
