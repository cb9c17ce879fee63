//! The HTTP server: accept loop, routing, body limits and graceful shutdown.
//!
//! Routes: `POST /wxpay/notify` (the original service's path), `GET /healthz`, `GET /metrics`
//! (Prometheus). Every notification reply carries its `x-request-id`, the id on every log line
//! about it in the gateway, pay-svc and order-svc.
//! Hostile clients are bounded: a connection cap, a header read timeout, a body size cap
//! checked before and while reading, and a deadline for the whole body.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use paynotify::{auth::AttachBearer, replicas::Replicas, wxpay::xml::MAX_BODY_BYTES};
use tokio::{net::TcpListener, sync::Semaphore};
use tracing::Instrument as _;

use crate::{
    Config,
    metrics::{self, ReplyReason, Route},
    notify::{self, Reply},
    pay_client,
};

/// In-flight notifications get this long to finish once shutdown begins.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

struct AppState {
    pay_svc: Replicas,
    auth: AttachBearer,
    body_timeout: Duration,
    upstream_timeout: Duration,
}

/// A bound, not yet serving, gateway.
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
    connections: Arc<Semaphore>,
    header_timeout: Duration,
}

/// Binds the listener and prepares the pay-svc channel (connected lazily).
pub async fn bind(config: Config) -> anyhow::Result<Server> {
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|e| anyhow::anyhow!("GATEWAY_ADDR: cannot listen on {}: {e}", config.addr))?;
    serve_on(listener, config)
}

/// Like [`bind`], on a listener bound beforehand: an in-process stack needs the gateway's
/// address (pay-svc's notify_url) before pay-svc exists, and the gateway needs pay-svc's.
///
/// The token sent to pay-svc is `config.grpc_auth_token` as [`Config::resolve_secrets`] and
/// [`Config::validate`] left it: GRPC_AUTH_TOKEN_FILE is not read again (what it holds now
/// may not be what was checked).
pub fn serve_on(listener: TcpListener, config: Config) -> anyhow::Result<Server> {
    anyhow::ensure!(
        config.grpc_auth_token_file.is_none(),
        "GRPC_AUTH_TOKEN_FILE is set but was not read: call Config::resolve_secrets first"
    );
    let pay_svc = pay_client::connect(&config)?;
    let auth = AttachBearer::new(config.grpc_auth_token.as_ref())?;
    metrics::register();
    Ok(Server {
        listener,
        state: Arc::new(AppState {
            pay_svc,
            auth,
            body_timeout: config.body_timeout(),
            upstream_timeout: config.upstream_timeout(),
        }),
        connections: Arc::new(Semaphore::new(config.max_connections.max(1))),
        header_timeout: config.header_timeout(),
    })
}

impl Server {
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests
    /// finish (up to a deadline).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "gateway listening");
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, _peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Usually EMFILE; back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Over the cap, shed the connection at once rather than queue it: memory stays
            // bounded and WeChat retries what it could not deliver.
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                tracing::warn!(
                    event = "gateway.connection_shed",
                    "connection limit reached"
                );
                metrics::connection_shed();
                continue;
            };
            let _ = stream.set_nodelay(true);
            let state = self.state.clone();
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(self.header_timeout)
                .serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |request| route(state.clone(), request)),
                );
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "connection ended with an error");
                }
                drop(permit);
            });
        }
        drop(self.listener);
        tracing::info!("gateway draining");
        if tokio::time::timeout(DRAIN_DEADLINE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("drain deadline passed with requests still in flight");
        }
        Ok(())
    }
}

async fn route(
    state: Arc<AppState>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let started = Instant::now();
    let (route, response) = match (request.method(), request.uri().path()) {
        (&Method::POST, "/wxpay/notify") => {
            let request_id = notify::new_request_id();
            let span = tracing::info_span!(
                "notify",
                %request_id,
                out_trade_no = tracing::field::Empty
            );
            let reply = receive_notification(&state, request, &request_id)
                .instrument(span)
                .await;
            metrics::reply(reply.reason);
            let mut response = xml_response(reply);
            if let Ok(value) = header::HeaderValue::from_str(&request_id) {
                response.headers_mut().insert("x-request-id", value);
            }
            (Route::Notify, response)
        }
        (&Method::GET, "/healthz") => (Route::Healthz, text_response(StatusCode::OK, "ok")),
        (&Method::GET, "/metrics") => (Route::Metrics, paynotify::metrics::metrics_response()),
        (_, "/wxpay/notify") | (_, "/healthz") | (_, "/metrics") => (
            Route::Other,
            text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        ),
        _ => (
            Route::Other,
            text_response(StatusCode::NOT_FOUND, "not found"),
        ),
    };
    metrics::request(route, started);
    Ok(response)
}

async fn receive_notification(
    state: &AppState,
    request: Request<Incoming>,
    request_id: &str,
) -> Reply {
    let declared_len = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        tracing::warn!(event = "notify.too_large", "body over the limit");
        Reply::fail(
            ReplyReason::TooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body too large",
        )
    };
    if declared_len.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let body = Limited::new(request.into_body(), MAX_BODY_BYTES).collect();
    let body = match tokio::time::timeout(state.body_timeout, body).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => return too_large(),
        Ok(Err(error)) => {
            tracing::warn!(event = "notify.body_error", %error, "could not read body");
            return Reply::fail(
                ReplyReason::BodyError,
                StatusCode::BAD_REQUEST,
                "could not read body",
            );
        }
        Err(_) => {
            tracing::warn!(event = "notify.body_timeout", "body arrived too slowly");
            return Reply::fail(
                ReplyReason::BodyTimeout,
                StatusCode::REQUEST_TIMEOUT,
                "body timed out",
            );
        }
    };
    notify::handle(
        &state.pay_svc,
        &state.auth,
        &body,
        request_id,
        state.upstream_timeout,
    )
    .await
}

fn xml_response(reply: Reply) -> Response<Full<Bytes>> {
    response(reply.status, "text/xml; charset=utf-8", reply.body.into())
}

fn text_response(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    response(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(text.as_bytes()),
    )
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}
