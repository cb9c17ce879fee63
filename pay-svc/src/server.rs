//! Start-up and shutdown: [`bind`] checks the config, builds the WeChat client and the
//! order-svc channel once, and binds the listener (port 0 works, for tests);
//! [`Server::run_until`] serves PayService with health and reflection, runs reconciliation in
//! the background, and drains gracefully when the shutdown future resolves.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use paynotify::{
    auth::{GatewayMethods, RequireBearer},
    metrics::{AdminServer, GrpcMetricsLayer},
    proto::pay::v1::pay_service_server::PayServiceServer,
    wxpay::client::WechatClient,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{
    service::interceptor::InterceptedService,
    transport::{ServerTlsConfig, server::TcpIncoming},
};
use tonic_health::ServingStatus;

use crate::{
    Config,
    confirm::Confirmer,
    notification::Merchant,
    orders::Orders,
    paid_orders::PaidOrders,
    reconcile::{self, ReconcileSettings},
    service::PayGrpc,
    wechat::Wechat,
};

/// What the gateway's token (GATEWAY_AUTH_TOKEN) opens: the one call the gateway makes. Every
/// other PayService method, present or added later, refuses it ([`GatewayMethods`]).
pub const GATEWAY_METHODS: &[&str] = &["/pay.v1.PayService/ConfirmPayment"];

/// A bound, not yet serving pay-svc.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    service: PayGrpc,
    auth: RequireBearer,
    tls: Option<ServerTlsConfig>,
    reconcile: Option<ReconcileSettings>,
    shutdown_grace: Duration,
    admin: Option<AdminServer>,
}

/// Validates `config`, builds the clients and binds the listener.
pub async fn bind(config: Config) -> anyhow::Result<Server> {
    let config = config.resolve_secrets()?;
    config.validate()?;
    let wechat = WechatClient::new(config.wechat_client_config())
        .and_then(|client| Wechat::new(client, config.wxpay_api_key_previous.clone()))
        .context("building the WeChat Pay client")?;
    warn_if_gateway_token_unset(&config);
    paynotify::replicas::warn_if_token_in_cleartext(
        "ORDER_SVC_URL",
        config.order_svc_url.split(','),
        config.order_svc_auth_token.as_ref(),
    );
    let orders = Orders::connect_lazy(
        &config.order_svc_url,
        Duration::from_millis(config.order_svc_connect_timeout_ms),
        Duration::from_millis(config.order_svc_timeout_ms),
        config.order_svc_retry(),
        config.order_svc_auth_token.as_ref(),
        &config.order_svc_tls()?,
    )
    .with_context(|| format!("invalid ORDER_SVC_URL `{}`", config.order_svc_url))?;
    let tls = config.server_tls()?;
    let listener = TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding PAY_SVC_ADDR {}", config.addr))?;
    let local_addr = listener.local_addr()?;
    let admin = match config.metrics_addr.0 {
        Some(addr) => Some(AdminServer::bind("METRICS_ADDR", addr).await?),
        None => None,
    };
    crate::metrics::register();
    let reconcile = (config.reconcile_interval_secs > 0).then(|| ReconcileSettings {
        interval: Duration::from_secs(config.reconcile_interval_secs),
        min_age: Duration::from_secs(config.reconcile_min_age_secs),
        max_age: (config.reconcile_max_age_secs > 0)
            .then(|| Duration::from_secs(config.reconcile_max_age_secs)),
        batch: config.reconcile_batch,
        queries_per_sec: config.reconcile_queries_per_sec,
        close_after: config.reconcile_close_after(),
    });
    let service = PayGrpc {
        merchant: Merchant {
            appid: config.wxpay_appid.clone(),
            mch_id: config.wxpay_mch_id.clone(),
            api_key: config.wxpay_api_key.clone(),
        },
        previous_api_key: config.wxpay_api_key_previous.clone(),
        confirmer: Confirmer {
            orders,
            wechat,
            paid: Arc::new(PaidOrders::new(config.paid_cache_entries)),
        },
        notify_url: config.wxpay_notify_url.clone(),
    };
    Ok(Server {
        listener,
        local_addr,
        service,
        auth: RequireBearer::new(config.grpc_auth_token.as_ref())
            .with_gateway_token(config.gateway_auth_token.as_ref()),
        tls,
        reconcile,
        shutdown_grace: Duration::from_millis(config.shutdown_grace_ms),
        admin,
    })
}

/// Logs a WARN at start when callers need a token but the gateway has none of its own: it
/// then presents GRPC_AUTH_TOKEN, and whoever takes the internet-facing gateway over can call
/// CreateNativePay and QueryOrder as well as ConfirmPayment.
fn warn_if_gateway_token_unset(config: &Config) {
    if config.grpc_auth_token.is_some() && config.gateway_auth_token.is_none() {
        tracing::warn!(
            event = "auth.gateway_token_unset",
            "GATEWAY_AUTH_TOKEN is not set, so the gateway calls with GRPC_AUTH_TOKEN, which opens every PayService method (CreateNativePay and QueryOrder too); give the gateway a token of its own: set GATEWAY_AUTH_TOKEN (or GATEWAY_AUTH_TOKEN_FILE) here and the same value as the gateways' GRPC_AUTH_TOKEN (docs/DEPLOYMENT.md)"
        );
    }
}

impl Server {
    /// The address actually bound (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `GET /metrics` is served, when METRICS_ADDR is not off.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(AdminServer::local_addr)
    }

    /// Serves until `shutdown` resolves, then reports NOT_SERVING, stops reconciliation,
    /// lets in-flight calls finish (for at most `SHUTDOWN_GRACE_MS`) and returns.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (health, health_service) = paynotify::runtime::health_reporter();
        health.set_serving::<PayServiceServer<PayGrpc>>().await;
        let (reflection_v1, reflection_v1alpha) =
            paynotify::runtime::reflection_services().context("building gRPC reflection")?;

        let cancel = CancellationToken::new();
        let reconciler = self.reconcile.map(|settings| {
            tokio::spawn(reconcile::run(
                self.service.confirmer.clone(),
                settings,
                cancel.child_token(),
            ))
        });

        let admin = self.admin.map(|admin| {
            let stopped = cancel.clone();
            tokio::spawn(admin.run_until(async move { stopped.cancelled().await }))
        });

        let draining = {
            let cancel = cancel.clone();
            let health = health.clone();
            async move {
                shutdown.await;
                tracing::info!("shutting down: NOT_SERVING, draining in-flight calls");
                health.set_not_serving::<PayServiceServer<PayGrpc>>().await;
                health
                    .set_service_status("", ServingStatus::NotServing)
                    .await;
                cancel.cancel();
            }
        };
        // Graceful shutdown waits for every open stream, and a health watcher's never ends:
        // once draining has started, give in-flight calls `grace`, then drop what is left.
        let grace = self.shutdown_grace;
        let grace_elapsed = {
            let cancel = cancel.clone();
            async move {
                cancel.cancelled().await;
                tokio::time::sleep(grace).await;
            }
        };

        tracing::info!(addr = %self.local_addr, tls = self.tls.is_some(), "pay-svc listening");
        let mut builder = paynotify::grpc_server::limits(tonic::transport::Server::builder());
        if let Some(tls) = self.tls {
            builder = builder
                .tls_config(tls)
                .context("GRPC_TLS_CERT_FILE / GRPC_TLS_KEY_FILE")?;
        }
        let served = builder
            .trace_fn(|request| {
                // The id comes from the caller, who may be anyone: bounded and escaped.
                let request_id = paynotify::grpc_server::request_id(request.headers());
                tracing::info_span!("grpc", method = %request.uri().path(), request_id = &*request_id)
            })
            .layer(GrpcMetricsLayer::new(crate::metrics::GRPC_METHODS))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            // Health and reflection stay open for probes and grpcurl; the business calls
            // need the token when one is configured.
            .add_service(InterceptedService::new(
                GatewayMethods::new(
                    PayServiceServer::new(self.service).max_decoding_message_size(
                        paynotify::grpc_server::MAX_DECODING_MESSAGE_SIZE,
                    ),
                    GATEWAY_METHODS,
                ),
                self.auth,
            ))
            .serve_with_incoming_shutdown(
                TcpIncoming::from(self.listener).with_nodelay(Some(true)),
                draining,
            );
        let served = tokio::select! {
            served = served => served,
            () = grace_elapsed => {
                tracing::warn!(?grace, "shutdown grace elapsed, dropping remaining connections");
                Ok(())
            }
        };
        cancel.cancel();
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        if let Some(task) = reconciler
            && let Err(err) = task.await
        {
            tracing::warn!(error = %err, "reconciliation task ended abnormally");
        }
        served.context("serving gRPC")?;
        tracing::info!("pay-svc stopped");
        Ok(())
    }
}
