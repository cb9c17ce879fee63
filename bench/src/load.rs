//! The load loop: a fixed number of workers take requests from one shared plan until the plan
//! is done or the time limit passes, and record each latency in an HDR histogram. The loop is
//! bounded in count and time and only ever talks to the addresses it is given (127.0.0.1).
//!
//! A [`Caller`] is one worker's way of making request `i`: a keep-alive HTTP/1.1 connection
//! posting notification bodies (the gateway, the bare ack server) or a clone of one gRPC
//! channel calling MarkPaid (the database floor).

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use paynotify::wxpay::reply::SUCCESS_ACK;
use tokio::net::TcpStream;

/// Latencies are recorded in microseconds, up to a minute, with 3 significant digits.
const MAX_LATENCY_US: u64 = 60_000_000;
/// How many distinct failure messages a run keeps to show.
const KEPT_ERRORS: usize = 5;

/// One worker's way of making request `index` of the plan.
pub trait Caller: Send + 'static {
    fn call(&mut self, index: usize) -> impl Future<Output = Result<(), String>> + Send;
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub requests: u64,
    pub failed: u64,
    pub elapsed: Duration,
    /// Latency of every request, in microseconds.
    pub latency: Histogram<u64>,
    /// A few failure messages, for the report.
    pub errors: Vec<String>,
    /// The plan was cut short by the time limit.
    pub timed_out: bool,
}

impl LoadResult {
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency quantile (0.0–1.0) in milliseconds.
    pub fn latency_ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.latency.max() as f64 / 1000.0
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
        .unwrap_or_else(|_| unreachable!("valid histogram bounds"))
}

/// Runs `total` requests on `concurrency` workers, each made by its own caller from
/// `new_caller`, stopping early once `time_limit` has passed.
pub async fn run<C: Caller>(
    total: usize,
    concurrency: usize,
    time_limit: Duration,
    new_caller: impl Fn() -> C,
) -> LoadResult {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + time_limit;
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let next = next.clone();
            let mut caller = new_caller();
            tokio::spawn(async move {
                let mut latency = new_histogram();
                let mut failed = 0u64;
                let mut errors = Vec::new();
                let mut timed_out = false;
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= total {
                        break;
                    }
                    if Instant::now() >= deadline {
                        timed_out = true;
                        break;
                    }
                    let sent = Instant::now();
                    let outcome = caller.call(index).await;
                    let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                    latency.saturating_record(micros.clamp(1, MAX_LATENCY_US));
                    if let Err(error) = outcome {
                        failed += 1;
                        if errors.len() < KEPT_ERRORS && !errors.contains(&error) {
                            errors.push(error);
                        }
                    }
                }
                (latency, failed, errors, timed_out)
            })
        })
        .collect();

    let mut result = LoadResult {
        requests: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latency: new_histogram(),
        errors: Vec::new(),
        timed_out: false,
    };
    for worker in workers {
        match worker.await {
            Ok((latency, failed, errors, timed_out)) => {
                // Same bounds on both sides, so adding cannot fail.
                let _ = result.latency.add(&latency);
                result.failed += failed;
                result.timed_out |= timed_out;
                for error in errors {
                    if result.errors.len() < KEPT_ERRORS && !result.errors.contains(&error) {
                        result.errors.push(error);
                    }
                }
            }
            Err(panic) => {
                result.failed += 1;
                result.errors.push(format!("worker panicked: {panic}"));
            }
        }
    }
    result.elapsed = started.elapsed();
    result.requests = result.latency.len();
    result
}

/// Posts notification bodies over one keep-alive HTTP/1.1 connection, reconnecting when the
/// server closes it. `plan[i]` says which body request `i` sends; a request succeeds only on
/// HTTP 200 with exactly WeChat's SUCCESS ack.
pub struct NotifyCaller {
    addr: SocketAddr,
    path: &'static str,
    bodies: Arc<Vec<Bytes>>,
    plan: Arc<Vec<usize>>,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl NotifyCaller {
    pub fn new(
        addr: SocketAddr,
        path: &'static str,
        bodies: Arc<Vec<Bytes>>,
        plan: Arc<Vec<usize>>,
        timeout: Duration,
    ) -> Self {
        NotifyCaller {
            addr,
            path,
            bodies,
            plan,
            timeout,
            sender: None,
        }
    }

    async fn connection(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if self.sender.as_ref().is_none_or(|sender| sender.is_closed()) {
            let stream = TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("connect {}: {e}", self.addr))?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) = http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        let sender = self
            .sender
            .as_mut()
            .ok_or_else(|| "no connection".to_owned())?;
        sender
            .ready()
            .await
            .map_err(|e| format!("connection not ready: {e}"))?;
        Ok(sender)
    }

    async fn post(&mut self, index: usize) -> Result<(), String> {
        let body = self
            .plan
            .get(index)
            .and_then(|&which| self.bodies.get(which))
            .cloned()
            .ok_or_else(|| format!("request {index} is not in the plan"))?;
        let request = Request::post(self.path)
            .header(header::HOST, self.addr.to_string())
            .header(header::CONTENT_TYPE, "text/xml")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let sender = self.connection().await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status();
        let reply = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the reply: {e}"))?
            .to_bytes();
        if status == StatusCode::OK && reply == SUCCESS_ACK.as_bytes() {
            Ok(())
        } else {
            Err(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&reply[..reply.len().min(200)])
            ))
        }
    }
}

impl Caller for NotifyCaller {
    async fn call(&mut self, index: usize) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.post(index)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                // Whatever went wrong, do not reuse a connection in an unknown state.
                self.sender = None;
                Err(error)
            }
            Err(_) => {
                self.sender = None;
                Err(format!("no reply within {:?}", self.timeout))
            }
        }
    }
}

/// The order in which a run posts notifications: every order's first notification once, plus
/// duplicates so that `dup_ratio` of all posts repeat an earlier one. A duplicate lands at a
/// random place within a window behind its original (a tenth of the plan), as WeChat's resends
/// from several servers arrive some time after the first copy: past the first window the share
/// of duplicates stays level instead of piling up towards the end, so a run measures one steady
/// mix. Concurrent workers may still have both copies in flight at once.
pub fn plan(orders: usize, dup_ratio: f64, rng: &mut impl rand::Rng) -> Vec<usize> {
    if orders == 0 || dup_ratio <= 0.0 {
        return (0..orders).collect();
    }
    let ratio = dup_ratio.min(0.99);
    let duplicates = ((orders as f64) * ratio / (1.0 - ratio)).round() as usize;
    let window = (orders as f64 / 10.0).max(1.0);
    // Originals sit at positions 0, 1, 2, ...; a duplicate of order o gets a position drawn
    // from (o, o + window], so sorting by position keeps it behind its original.
    let mut positioned: Vec<(f64, usize)> = (0..orders).map(|o| (o as f64, o)).collect();
    for _ in 0..duplicates {
        let order = rng.random_range(0..orders);
        let position = order as f64 + rng.random_range(0.0..window) + 0.5;
        positioned.push((position, order));
    }
    positioned.sort_by(|a, b| a.0.total_cmp(&b.0));
    positioned.into_iter().map(|(_, order)| order).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    struct Counting(Arc<AtomicUsize>);

    impl Caller for Counting {
        async fn call(&mut self, index: usize) -> Result<(), String> {
            self.0.fetch_add(1, Ordering::Relaxed);
            if index.is_multiple_of(10) {
                Err("every tenth fails".into())
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn every_planned_request_runs_once_and_failures_are_counted() {
        let calls = Arc::new(AtomicUsize::new(0));
        let result = run(100, 8, Duration::from_secs(10), || Counting(calls.clone())).await;
        assert_eq!(calls.load(Ordering::Relaxed), 100);
        assert_eq!(result.requests, 100);
        assert_eq!(result.failed, 10);
        assert_eq!(result.errors, ["every tenth fails"]);
        assert!(!result.timed_out);
    }

    #[tokio::test]
    async fn the_time_limit_stops_the_loop() {
        let calls = Arc::new(AtomicUsize::new(0));
        let result = run(usize::MAX, 2, Duration::ZERO, || Counting(calls.clone())).await;
        assert!(result.timed_out);
        assert_eq!(result.requests, 0);
    }

    #[test]
    fn a_plan_without_duplicates_is_each_order_once() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(plan(5, 0.0, &mut rng), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn duplicates_follow_their_original() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let plan = plan(200, 0.5, &mut rng);
        assert_eq!(plan.len(), 400, "half of all posts are duplicates");
        // The originals keep their order, so order o's first post comes after o-1's.
        let firsts: Vec<usize> = (0..200)
            .map(|order| plan.iter().position(|&o| o == order).unwrap())
            .collect();
        assert!(firsts.windows(2).all(|w| w[0] < w[1]), "{plan:?}");
    }

    #[test]
    fn duplicates_are_spread_evenly_after_the_first_window() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let orders = 20_000;
        let plan = plan(orders, 0.5, &mut rng);
        // Mark each post as first or duplicate, then count duplicates per tenth of the plan.
        let mut seen = vec![false; orders];
        let is_duplicate: Vec<bool> = plan
            .iter()
            .map(|&order| std::mem::replace(&mut seen[order], true))
            .collect();
        let tenth = plan.len() / 10;
        let shares: Vec<f64> = is_duplicate
            .chunks(tenth)
            .take(10)
            .map(|chunk| chunk.iter().filter(|&&d| d).count() as f64 / chunk.len() as f64)
            .collect();
        // The first tenth fills up and the last drains; the tenths between hold the asked-for
        // half (with uniform placement the later tenths held far more than the earlier).
        for (i, share) in shares.iter().enumerate().take(9).skip(1) {
            assert!(
                (0.45..=0.55).contains(share),
                "tenth {i}: {share:.2} in {shares:.2?}"
            );
        }
    }
}
