//! Where a phase's requests spent their time, from the services' own Prometheus metrics: the
//! load tool scrapes pay-svc's and order-svc's `/metrics` around each phase and takes the
//! difference of the latency histograms' sums and counts (mean time per call) and of
//! order-svc's group-commit counters (payments per SQLite commit).

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long one scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// One scrape of a Prometheus text page: every sample by its name and labels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Samples(Vec<Sample>);

#[derive(Clone, Debug, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Samples {
    /// Parses the text exposition format as this project's exporter writes it: one
    /// `name{label="value",…} number` per line, `#` lines skipped. A line that does not
    /// parse is skipped too: the figures built on these are informative, never a verdict.
    pub fn parse(text: &str) -> Samples {
        Samples(text.lines().filter_map(parse_line).collect())
    }

    /// The sum of every sample named `name` whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .map(|s| s.value)
            .sum()
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
        None => (series, Vec::new()),
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y"`; our label values hold no quotes or commas.
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    text.split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let value = value.strip_prefix('"')?.strip_suffix('"')?;
            Some((key.to_owned(), value.to_owned()))
        })
        .collect()
}

/// `GET /metrics` from a service's admin port.
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<Samples> {
    let fetch = async {
        let stream = TcpStream::connect(addr).await?;
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = Request::get("/metrics")
            .header(header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(SCRAPE_TIMEOUT, fetch)
        .await
        .context("no answer in time")?
        .with_context(|| format!("GET http://{addr}/metrics"))?;
    if status != StatusCode::OK {
        bail!("GET http://{addr}/metrics: HTTP {status}");
    }
    Ok(Samples::parse(&String::from_utf8_lossy(&body)))
}

/// The two services' pages at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub pay_svc: Samples,
    pub order_svc: Samples,
}

impl Snapshot {
    pub async fn take(pay_svc: SocketAddr, order_svc: SocketAddr) -> anyhow::Result<Snapshot> {
        Ok(Snapshot {
            pay_svc: scrape(pay_svc).await.context("pay-svc metrics")?,
            order_svc: scrape(order_svc).await.context("order-svc metrics")?,
        })
    }
}

/// Calls of one kind made during a phase: how many, their time in all and on average.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Calls {
    pub count: f64,
    pub total_ms: f64,
    pub mean_ms: f64,
}

impl Calls {
    /// From histogram `name`'s `_sum` and `_count` (every series with `labels`), before and
    /// after a phase.
    fn between(
        (before, after): (&Samples, &Samples),
        name: &str,
        labels: &[(&str, &str)],
    ) -> Calls {
        let delta = |suffix: &str| {
            let series = format!("{name}_{suffix}");
            after.sum(&series, labels) - before.sum(&series, labels)
        };
        let (count, total_ms) = (delta("count"), delta("sum") * 1000.0);
        let mean_ms = if count > 0.0 { total_ms / count } else { 0.0 };
        Calls {
            count,
            total_ms,
            mean_ms,
        }
    }

    /// Their time spread over `n` notifications (some of which, duplicates, made no call).
    fn per(&self, n: f64) -> f64 {
        self.total_ms / n
    }
}

/// What the services' metrics say about one phase.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stages {
    /// pay-svc's `ConfirmPayment`, whole (server side).
    pub confirm: Calls,
    /// order-svc's `MarkPaid` (server side), from whoever called it.
    pub mark_paid: Calls,
    /// order-svc's `GetOrder` (server side).
    pub get_order: Calls,
    /// pay-svc's `orderquery` calls to WeChat, retries included.
    pub orderquery: Calls,
    /// SQLite group commits of MarkPaid, and the payments they held (0 on other databases).
    pub groups: f64,
    pub grouped: f64,
}

const GRPC_SECONDS: &str = "grpc_server_handling_seconds";
const ORDERQUERY_SECONDS: &str = "paysvc_orderquery_duration_seconds";

impl Stages {
    pub fn between(before: &Snapshot, after: &Snapshot) -> Stages {
        let (pay, order) = (
            (&before.pay_svc, &after.pay_svc),
            (&before.order_svc, &after.order_svc),
        );
        let counter = |name: &str| order.1.sum(name, &[]) - order.0.sum(name, &[]);
        Stages {
            confirm: Calls::between(pay, GRPC_SECONDS, &[("grpc_method", "ConfirmPayment")]),
            mark_paid: Calls::between(order, GRPC_SECONDS, &[("grpc_method", "MarkPaid")]),
            get_order: Calls::between(order, GRPC_SECONDS, &[("grpc_method", "GetOrder")]),
            orderquery: Calls::between(pay, ORDERQUERY_SECONDS, &[]),
            groups: counter("ordersvc_mark_paid_groups_total"),
            grouped: counter("ordersvc_mark_paid_grouped_total"),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let calls = |c: &Calls| serde_json::json!({"count": c.count, "mean_ms": c.mean_ms});
        serde_json::json!({
            "pay_svc_confirm_payment": calls(&self.confirm),
            "order_svc_mark_paid": calls(&self.mark_paid),
            "order_svc_get_order": calls(&self.get_order),
            "pay_svc_orderquery": calls(&self.orderquery),
            "mark_paid_group_size": self.group_size(),
        })
    }

    /// Payments per group commit, when there were any.
    pub fn group_size(&self) -> Option<f64> {
        (self.groups > 0.0).then(|| self.grouped / self.groups)
    }

    /// One line for a phase of first notifications: the mean time a notification was in
    /// flight (`in_flight_ms`, concurrency / throughput), pay-svc's part of it and that
    /// part's parts, then how the writer grouped the payments. `None` when pay-svc saw no
    /// calls.
    pub fn notification_note(&self, phase: &str, in_flight_ms: f64) -> Option<String> {
        if self.confirm.count <= 0.0 {
            return None;
        }
        let notifications = self.confirm.count;
        let [confirm, mark_paid, get_order, orderquery] = [
            self.confirm,
            self.mark_paid,
            self.get_order,
            self.orderquery,
        ]
        .map(|calls| calls.per(notifications));
        let rest = confirm - mark_paid - get_order - orderquery;
        let mut note = format!(
            "{phase}: {in_flight_ms:.1} ms in flight per notification, of which pay-svc \
             {confirm:.1} ms = order-svc MarkPaid {mark_paid:.1} + GetOrder {get_order:.1} + \
             WeChat orderquery {orderquery:.1} + {rest:.1} of its own and its clients' (means \
             per notification, from the services' metrics)"
        );
        if let Some(size) = self.group_size() {
            note.push_str(&format!(
                "; MarkPaid committed {size:.1} payments per group"
            ));
        }
        Some(note)
    }

    /// One line for a MarkPaid floor: the writer's group size there.
    pub fn floor_note(&self, phase: &str) -> Option<String> {
        let size = self.group_size()?;
        Some(format!(
            "{phase}: MarkPaid {:.1} ms on average in order-svc, {size:.1} payments per group",
            self.mark_paid.mean_ms
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP grpc_server_handling_seconds time
# TYPE grpc_server_handling_seconds histogram
grpc_server_handling_seconds_bucket{grpc_service="pay.v1.PayService",grpc_method="ConfirmPayment",le="0.005"} 3
grpc_server_handling_seconds_sum{grpc_service="pay.v1.PayService",grpc_method="ConfirmPayment"} 2.5
grpc_server_handling_seconds_count{grpc_service="pay.v1.PayService",grpc_method="ConfirmPayment"} 100
paysvc_orderquery_duration_seconds_sum{result="ok"} 0.3
paysvc_orderquery_duration_seconds_count{result="ok"} 98
paysvc_orderquery_duration_seconds_sum{result="timeout"} 0.1
paysvc_orderquery_duration_seconds_count{result="timeout"} 2
ordersvc_mark_paid_groups_total 10
not a sample line
"#;

    #[test]
    fn samples_are_found_by_name_and_labels() {
        let samples = Samples::parse(PAGE);
        let confirm = [("grpc_method", "ConfirmPayment")];
        assert_eq!(
            samples.sum("grpc_server_handling_seconds_count", &confirm),
            100.0
        );
        assert_eq!(
            samples.sum(
                "grpc_server_handling_seconds_count",
                &[("grpc_method", "MarkPaid")]
            ),
            0.0
        );
        // Without labels to match, every result of orderquery counts.
        assert_eq!(
            samples.sum("paysvc_orderquery_duration_seconds_count", &[]),
            100.0
        );
        assert_eq!(samples.sum("ordersvc_mark_paid_groups_total", &[]), 10.0);
        assert_eq!(samples.sum("grpc_server_handling_seconds", &confirm), 0.0);
    }

    fn snapshot(pay: &str, order: &str) -> Snapshot {
        Snapshot {
            pay_svc: Samples::parse(pay),
            order_svc: Samples::parse(order),
        }
    }

    #[test]
    fn a_phase_is_the_difference_between_its_two_snapshots() {
        let before = snapshot(
            "grpc_server_handling_seconds_sum{grpc_method=\"ConfirmPayment\"} 1\n\
             grpc_server_handling_seconds_count{grpc_method=\"ConfirmPayment\"} 100\n\
             paysvc_orderquery_duration_seconds_sum{result=\"ok\"} 0.1\n\
             paysvc_orderquery_duration_seconds_count{result=\"ok\"} 100\n",
            "grpc_server_handling_seconds_sum{grpc_method=\"MarkPaid\"} 5\n\
             grpc_server_handling_seconds_count{grpc_method=\"MarkPaid\"} 1000\n\
             ordersvc_mark_paid_groups_total 50\n\
             ordersvc_mark_paid_grouped_total 1000\n",
        );
        let after = snapshot(
            "grpc_server_handling_seconds_sum{grpc_method=\"ConfirmPayment\"} 3\n\
             grpc_server_handling_seconds_count{grpc_method=\"ConfirmPayment\"} 200\n\
             paysvc_orderquery_duration_seconds_sum{result=\"ok\"} 0.3\n\
             paysvc_orderquery_duration_seconds_count{result=\"ok\"} 200\n",
            "grpc_server_handling_seconds_sum{grpc_method=\"MarkPaid\"} 6.2\n\
             grpc_server_handling_seconds_count{grpc_method=\"MarkPaid\"} 1100\n\
             grpc_server_handling_seconds_sum{grpc_method=\"GetOrder\"} 0.1\n\
             grpc_server_handling_seconds_count{grpc_method=\"GetOrder\"} 100\n\
             ordersvc_mark_paid_groups_total 55\n\
             ordersvc_mark_paid_grouped_total 1100\n",
        );
        let stages = Stages::between(&before, &after);
        assert_eq!(stages.confirm.count, 100.0);
        assert!((stages.confirm.mean_ms - 20.0).abs() < 1e-9, "{stages:?}");
        assert!((stages.mark_paid.mean_ms - 12.0).abs() < 1e-9, "{stages:?}");
        assert!((stages.get_order.mean_ms - 1.0).abs() < 1e-9, "{stages:?}");
        assert!((stages.orderquery.mean_ms - 2.0).abs() < 1e-9, "{stages:?}");
        assert_eq!(stages.group_size(), Some(20.0));

        let note = stages
            .notification_note("e2e: first notifications", 25.0)
            .unwrap();
        assert!(
            note.starts_with(
                "e2e: first notifications: 25.0 ms in flight per notification, of which \
                 pay-svc 20.0 ms = order-svc MarkPaid 12.0 + GetOrder 1.0 + WeChat orderquery \
                 2.0 + 5.0 of its own"
            ),
            "{note}"
        );
        assert!(note.ends_with("20.0 payments per group"), "{note}");
        let floor = stages.floor_note("floor: MarkPaid gRPC").unwrap();
        assert_eq!(
            floor,
            "floor: MarkPaid gRPC: MarkPaid 12.0 ms on average in order-svc, 20.0 payments per group"
        );
    }

    /// With resent copies among the notifications, only the first of each calls order-svc
    /// and WeChat: their time is spread over every notification, so the parts still add up.
    #[test]
    fn duplicates_spread_the_calls_over_every_notification() {
        let after = snapshot(
            "grpc_server_handling_seconds_sum{grpc_method=\"ConfirmPayment\"} 1.2\n\
             grpc_server_handling_seconds_count{grpc_method=\"ConfirmPayment\"} 200\n\
             paysvc_orderquery_duration_seconds_sum{result=\"ok\"} 0.2\n\
             paysvc_orderquery_duration_seconds_count{result=\"ok\"} 100\n",
            "grpc_server_handling_seconds_sum{grpc_method=\"MarkPaid\"} 0.8\n\
             grpc_server_handling_seconds_count{grpc_method=\"MarkPaid\"} 100\n",
        );
        let stages = Stages::between(&Snapshot::default(), &after);
        assert!((stages.mark_paid.mean_ms - 8.0).abs() < 1e-9, "{stages:?}");
        let note = stages.notification_note("mix", 7.0).unwrap();
        assert!(
            note.contains(
                "pay-svc 6.0 ms = order-svc MarkPaid 4.0 + GetOrder 0.0 + WeChat orderquery 1.0 \
                 + 1.0 of its own"
            ),
            "{note}"
        );
    }

    /// A service that is down, or answers something else than its metrics page, is an error
    /// that names the address (the run then goes on without the breakdown).
    #[tokio::test]
    async fn a_scrape_that_cannot_read_the_page_fails() {
        let closed = {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let error = format!("{:#}", scrape(closed).await.unwrap_err());
        assert!(error.contains(&closed.to_string()), "{error}");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let not_found = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await;
            let _ = socket
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .await;
        });
        let error = format!("{:#}", scrape(not_found).await.unwrap_err());
        assert!(error.contains("404"), "{error}");
    }

    #[test]
    fn a_phase_without_notifications_or_groups_has_no_note() {
        let nothing = Stages::default();
        assert_eq!(nothing.notification_note("e2e", 10.0), None);
        assert_eq!(nothing.floor_note("floor"), None);
    }
}
