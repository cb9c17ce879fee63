//! Prometheus metrics shared by every service: one process-wide recorder (the `metrics`
//! facade with `metrics-exporter-prometheus` behind it), the latency buckets, a small admin
//! HTTP server for `GET /metrics` and `GET /healthz` (pay-svc and order-svc; the gateway serves
//! `/metrics` on its own port), and a tower layer that times gRPC calls.
//!
//! [`init`] installs the recorder once per process and is safe to call from every server a
//! process starts (devstack runs all of them in one process, tests start many): they then share
//! one registry. Services register their metric handles once, after `init`, and only touch
//! atomics on the request path.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    str::FromStr,
    sync::OnceLock,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

/// Histogram bucket upper bounds, in seconds: 0.5 ms to 10 s, dense where this system's
/// calls live (a MarkPaid is a few ms, an orderquery tens of ms, WeChat waits 5 s at most).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (first call only) and returns its handle.
/// If another recorder was installed first, by something outside this crate, the metrics go
/// there and this handle renders an empty page; a warning says so.
pub fn init() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .unwrap_or_else(|_| unreachable!("LATENCY_BUCKETS is not empty"));
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will be empty");
        }
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "metrics upkeep thread not started; scrapes still work");
        }
        handle
    })
}

/// The current metrics in the Prometheus text format.
pub fn render() -> String {
    init().render()
}

/// Seconds since `started`, as histograms want them.
pub fn seconds_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64()
}

/// An admin address setting (`METRICS_ADDR`): an address to listen on, or off (empty / `off`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminAddr(pub Option<SocketAddr>);

impl AdminAddr {
    pub const OFF: AdminAddr = AdminAddr(None);

    /// Any free port on localhost: what tests use.
    pub fn any_local_port() -> AdminAddr {
        AdminAddr(Some(SocketAddr::from(([127, 0, 0, 1], 0))))
    }
}

impl FromStr for AdminAddr {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let value = value.trim();
        if value.is_empty() || value.eq_ignore_ascii_case("off") {
            return Ok(AdminAddr(None));
        }
        value
            .parse()
            .map(|addr| AdminAddr(Some(addr)))
            .map_err(|_| {
                format!("`{value}` is not an address like 127.0.0.1:9101 (or `off` to disable)")
            })
    }
}

impl std::fmt::Display for AdminAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("off"),
        }
    }
}

/// The admin address could not be listened on.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: cannot listen on {addr}: {source}")]
pub struct AdminError {
    pub setting: &'static str,
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// A bound, not yet serving admin HTTP server: `GET /metrics`, `GET /healthz`.
#[derive(Debug)]
pub struct AdminServer {
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl AdminServer {
    /// Binds `addr` (installing the recorder); `setting` names it in the error.
    pub async fn bind(setting: &'static str, addr: SocketAddr) -> Result<AdminServer, AdminError> {
        init();
        let error = |source| AdminError {
            setting,
            addr,
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(error)?;
        let local_addr = listener.local_addr().map_err(error)?;
        Ok(AdminServer {
            listener,
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves. Scrapes are short; open connections are simply
    /// dropped at shutdown.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        tracing::info!(addr = %self.local_addr, "metrics listening");
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "metrics: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service_fn(admin_route));
            tokio::spawn(async move {
                let _ = connection.await;
            });
        }
    }
}

async fn admin_route(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => metrics_response(),
        (&Method::GET, "/healthz") => plain(StatusCode::OK, "ok"),
        (_, "/metrics" | "/healthz") => plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    })
}

/// `GET /metrics`: the text exposition of every metric of this process.
pub fn metrics_response() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(render())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The gRPC methods a [`GrpcMetricsLayer`] knows, by full path (`/package.Service/Method`).
/// Calls to other paths (reflection streams, health watches) pass through untimed.
struct GrpcMethod {
    path: &'static str,
    service: &'static str,
    method: &'static str,
    duration: Histogram,
    ok: Counter,
}

/// A tower layer for tonic servers: `grpc_server_handling_seconds{grpc_service,grpc_method}`
/// and `grpc_server_handled_total{grpc_service,grpc_method,grpc_code}`, the names
/// go-grpc-prometheus made familiar. The time runs until the response head is ready, which
/// for a unary call is the handler's whole work.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    methods: std::sync::Arc<[GrpcMethod]>,
}

impl std::fmt::Debug for GrpcMetricsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.methods.iter().map(|m| m.path))
            .finish()
    }
}

impl GrpcMetricsLayer {
    /// Times the listed unary methods, each a full path such as
    /// `/order.v1.OrderService/MarkPaid`.
    pub fn new(paths: &[&'static str]) -> GrpcMetricsLayer {
        init();
        let methods = paths
            .iter()
            .map(|&path| {
                let (service, method) = path
                    .strip_prefix('/')
                    .and_then(|p| p.split_once('/'))
                    .unwrap_or(("unknown", path));
                GrpcMethod {
                    path,
                    service,
                    method,
                    duration: metrics::histogram!(
                        "grpc_server_handling_seconds",
                        "grpc_service" => service,
                        "grpc_method" => method
                    ),
                    ok: metrics::counter!(
                        "grpc_server_handled_total",
                        "grpc_service" => service,
                        "grpc_method" => method,
                        "grpc_code" => "OK"
                    ),
                }
            })
            .collect();
        metrics::describe_histogram!(
            "grpc_server_handling_seconds",
            metrics::Unit::Seconds,
            "gRPC unary calls served, by how long they took"
        );
        metrics::describe_counter!(
            "grpc_server_handled_total",
            "gRPC unary calls served, by status code"
        );
        GrpcMetricsLayer { methods }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics {
            inner,
            methods: self.methods.clone(),
        }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around a tonic server's routes.
#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    methods: std::sync::Arc<[GrpcMethod]>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let path = request.uri().path();
        let known = self.methods.iter().position(|m| m.path == path);
        let started = Instant::now();
        let call = self.inner.call(request);
        let Some(index) = known else {
            return Box::pin(call);
        };
        let methods = self.methods.clone();
        Box::pin(async move {
            let result = call.await;
            let method = &methods[index];
            method.duration.record(seconds_since(started));
            // A unary call that fails answers with its status in the headers (trailers-only);
            // one that succeeds sends grpc-status 0 in the trailers, after the head.
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or("OK", |code| code_name(tonic::Code::from(code))),
                Err(_) => "Unknown",
            };
            if code == "OK" {
                method.ok.increment(1);
            } else {
                metrics::counter!(
                    "grpc_server_handled_total",
                    "grpc_service" => method.service,
                    "grpc_method" => method.method,
                    "grpc_code" => code
                )
                .increment(1);
            }
            result
        })
    }
}

/// The status code's name as gRPC's own libraries spell it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_addresses_parse_or_turn_off() {
        assert_eq!("".parse::<AdminAddr>(), Ok(AdminAddr::OFF));
        assert_eq!(" OFF ".parse::<AdminAddr>(), Ok(AdminAddr::OFF));
        assert_eq!(
            "127.0.0.1:9101".parse::<AdminAddr>(),
            Ok(AdminAddr(Some(SocketAddr::from(([127, 0, 0, 1], 9101)))))
        );
        assert!("localhost".parse::<AdminAddr>().is_err());
        assert_eq!(AdminAddr::OFF.to_string(), "off");
    }

    #[test]
    fn init_is_idempotent_and_renders_what_was_recorded() {
        let first: *const PrometheusHandle = init();
        let second: *const PrometheusHandle = init();
        assert_eq!(first, second);
        metrics::counter!("paynotify_metrics_selftest_total", "case" => "a").increment(2);
        metrics::histogram!("paynotify_metrics_selftest_seconds").record(0.003);
        let text = render();
        assert!(
            text.contains("paynotify_metrics_selftest_total{case=\"a\"} 2"),
            "{text}"
        );
        // Buckets, not a summary: ms-scale bounds present.
        assert!(
            text.contains("paynotify_metrics_selftest_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_admin_server_serves_metrics_and_health() {
        let server = AdminServer::bind("METRICS_ADDR", SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        metrics::counter!("paynotify_admin_selftest_total").increment(1);
        let get = |path: &'static str| async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
            tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
                .await
                .unwrap();
            let mut reply = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut reply)
                .await
                .unwrap();
            reply
        };
        let metrics = get("/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(metrics.contains(CONTENT_TYPE), "{metrics}");
        assert!(
            metrics.contains("paynotify_admin_selftest_total 1"),
            "{metrics}"
        );
        assert!(get("/healthz").await.ends_with("ok"));
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
        let _ = stop.send(());
        task.await.unwrap();

        assert!(
            AdminServer::bind("METRICS_ADDR", SocketAddr::from(([203, 0, 113, 1], 1)))
                .await
                .unwrap_err()
                .to_string()
                .starts_with("METRICS_ADDR: cannot listen on 203.0.113.1:1")
        );
    }
}
