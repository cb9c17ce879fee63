//! A stack per test, notifications by hand, and reading `/metrics`. Starting a stack, creating
//! and paying orders come from `tests/it/support.rs`, shared with that suite.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use devstack::Stack;
use order_svc::testing::Backend;
use tokio::sync::{Mutex, MutexGuard};

#[path = "../it/support.rs"]
#[allow(dead_code)] // this suite uses only part of it
mod shared;

pub use shared::{TestStack, new_order, paid_notification, sign};

/// Tests that count or capture traffic hold this, so they never overlap.
pub async fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::const_new(());
    SERIAL.lock().await
}

/// A stack on SQLite (what these suites need; the backends are covered by `tests/it`).
pub async fn start() -> TestStack {
    shared::start(Backend::Sqlite).await
}

/// What the gateway answered a notification.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub request_id: String,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        self.body == paynotify::wxpay::reply::SUCCESS_ACK
    }
}

/// Posts a body to the gateway's notify URL.
pub async fn post(stack: &Stack, body: impl Into<reqwest::Body>) -> Answer {
    let response = reqwest::Client::new()
        .post(stack.notify_url())
        .header("content-type", "text/xml")
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Answer {
        status,
        body: response.text().await.unwrap(),
        request_id,
    }
}

/// `GET http://<addr>/metrics`, checked to be the Prometheus text format.
pub async fn scrape(addr: SocketAddr) -> Metrics {
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"],
        paynotify::metrics::CONTENT_TYPE
    );
    Metrics::parse(&response.text().await.unwrap())
}

/// One scrape: every sample, by metric name and labels.
#[derive(Debug)]
pub struct Metrics {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let value: f64 = value.parse().unwrap();
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => (name, labels.trim_end_matches('}')),
                    None => (series, ""),
                };
                let labels = labels
                    .split(',')
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once('=').unwrap();
                        (k.to_owned(), v.trim_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels, value)
            })
            .collect();
        Metrics { samples }
    }

    /// The sum over the series of `name` whose labels include `labels`; 0 when none.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).is_some_and(|have| have == v))
            })
            .map(|(_, _, value)| value)
            .sum()
    }

    /// Whether a series of `name` with `labels` is exported (even at 0).
    pub fn samples_of(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.samples.iter().any(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).is_some_and(|have| have == v))
        })
    }

    /// Whether `name` is exported at all.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }
}
