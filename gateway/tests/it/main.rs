#![allow(clippy::unwrap_used)]

//! The gateway over real sockets, in front of a scripted pay-svc (a real tonic server on
//! port 0). The full path with the real pay-svc and order-svc is tested end to end in devstack.

mod black_hole;
mod failover;
mod fake_pay_svc;
mod hostile;
// The test CA and server certificate of order-svc's tests.
#[path = "../../../order-svc/tests/it/pki.rs"]
mod pki;
mod startup;
mod tls;
mod verdicts;

use std::{net::SocketAddr, time::Duration};

use fake_pay_svc::FakePaySvc;
use tokio_util::sync::CancellationToken;

/// A running gateway in front of a fake pay-svc; both stop when dropped.
pub struct Harness {
    pub gateway: SocketAddr,
    pub pay_svc: FakePaySvc,
    stop: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Harness {
    pub async fn start(pay_svc: FakePaySvc) -> Harness {
        Self::start_with(pay_svc, |_| {}).await
    }

    pub async fn start_with(
        pay_svc: FakePaySvc,
        adjust: impl FnOnce(&mut gateway::Config),
    ) -> Harness {
        let stop = CancellationToken::new();
        let mut config = gateway::Config::for_pay_svc(format!("http://{}", pay_svc.addr));
        config.upstream_timeout_ms = 1_000;
        config.body_timeout_ms = 500;
        config.header_timeout_ms = 1_000;
        adjust(&mut config);
        let server = gateway::bind(config).await.unwrap();
        let addr = server.local_addr();
        let token = stop.clone();
        tokio::spawn(server.run_until(async move { token.cancelled().await }));
        Harness {
            gateway: addr,
            pay_svc,
            stop,
        }
    }

    pub fn notify_url(&self) -> String {
        format!("http://{}/wxpay/notify", self.gateway)
    }

    pub async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, String) {
        let response = reqwest::Client::new()
            .post(self.notify_url())
            .header("content-type", "text/xml")
            .body(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }
}

pub const SUCCESS_ACK: &str = paynotify::wxpay::reply::SUCCESS_ACK;

pub const NOTIFICATION: &str = "<xml><appid><![CDATA[wx8397f8696b538317]]></appid><mch_id>1473426802</mch_id><out_trade_no><![CDATA[1001]]></out_trade_no><return_code><![CDATA[SUCCESS]]></return_code><sign><![CDATA[ABC]]></sign></xml>";

pub fn is_fail_ack(body: &str) -> bool {
    body.starts_with("<xml><return_code><![CDATA[FAIL]]></return_code>")
}
