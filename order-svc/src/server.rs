//! Start-up and serving: [`bind`] prepares everything that can fail (database, schema,
//! listener) before anything is served; [`Server::run_until`] serves `OrderService`, health and
//! reflection until the shutdown future resolves, then drains.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use paynotify::auth::RequireBearer;
use paynotify::grpc_server;
use paynotify::metrics::{AdminServer, GrpcMetricsLayer};
use paynotify::proto::order::v1::order_service_server::OrderServiceServer;
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{ServerTlsConfig, server::TcpIncoming};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::config::Config;
use crate::db;
use crate::service::OrderApi;
use crate::store::OrderStore;

/// How often the database is pinged to keep the health status honest.
const DB_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// A bound, not yet serving order-svc.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    db: DatabaseConnection,
    shutdown_grace: Duration,
    auth: RequireBearer,
    tls: Option<ServerTlsConfig>,
    admin: Option<AdminServer>,
}

/// Connects the database, migrates or verifies its schema, and binds the listener.
pub async fn bind(config: Config) -> anyhow::Result<Server> {
    let db = db::connect(&config).await?;
    db::prepare_schema(&db, config.schema).await?;
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("binding ORDER_SVC_ADDR {}", config.listen_addr))?;
    let local_addr = listener.local_addr()?;
    let admin = match config.metrics_addr.0 {
        Some(addr) => Some(AdminServer::bind("METRICS_ADDR", addr).await?),
        None => None,
    };
    crate::metrics::register();
    tracing::info!(
        %local_addr,
        database = %config.database_url,
        schema = ?config.schema,
        tls = config.grpc_tls.is_some(),
        "order-svc bound"
    );
    Ok(Server {
        listener,
        local_addr,
        db,
        shutdown_grace: config.shutdown_grace,
        auth: RequireBearer::new(config.grpc_auth_token.as_ref()),
        tls: config.grpc_tls,
        admin,
    })
}

impl Server {
    /// Where the server listens (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `GET /metrics` is served, when METRICS_ADDR is not off.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(AdminServer::local_addr)
    }

    /// Serves until `shutdown` resolves, then reports NOT_SERVING, lets in-flight calls finish
    /// (for at most the configured grace) and closes the pool.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (health, health_service) = paynotify::runtime::health_reporter();
        // Migrations ran (or the schema was verified) in `bind`.
        health.set_serving::<OrderServiceServer<OrderApi>>().await;
        let probe = tokio::spawn(probe_database(self.db.clone(), health.clone()));
        let (drain_started, drain_started_rx) = oneshot::channel::<()>();
        let (admin_stop, admin_stopped) = oneshot::channel::<()>();
        let admin = self.admin.map(|admin| {
            tokio::spawn(admin.run_until(async move {
                let _ = admin_stopped.await;
            }))
        });
        let draining = {
            let health = health.clone();
            async move {
                shutdown.await;
                let _ = admin_stop.send(());
                probe.abort();
                tracing::info!("shutting down: NOT_SERVING, draining in-flight calls");
                set_status(&health, ServingStatus::NotServing).await;
                let _ = drain_started.send(());
            }
        };
        // Graceful shutdown waits for every open stream, and a health watcher's never ends.
        let grace = self.shutdown_grace;
        let grace_elapsed = async move {
            match drain_started_rx.await {
                Ok(()) => tokio::time::sleep(grace).await,
                Err(_) => std::future::pending().await,
            }
        };

        let (reflection_v1, reflection_v1alpha) = paynotify::runtime::reflection_services()?;
        let api = OrderApi::new(OrderStore::new(self.db.clone()));
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        let mut builder = grpc_server::limits(tonic::transport::Server::builder());
        if let Some(tls) = self.tls {
            builder = builder
                .tls_config(tls)
                .context("GRPC_TLS_CERT_FILE / GRPC_TLS_KEY_FILE")?;
        }
        let serve = builder
            .trace_fn(|request| {
                // The id comes from the caller, who may be anyone: bounded and escaped.
                let request_id = grpc_server::request_id(request.headers());
                tracing::info_span!("grpc", path = %request.uri().path(), request_id = &*request_id)
            })
            .layer(GrpcMetricsLayer::new(crate::metrics::GRPC_METHODS))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(InterceptedService::new(
                OrderServiceServer::new(api)
                    .max_decoding_message_size(grpc_server::MAX_DECODING_MESSAGE_SIZE),
                self.auth,
            ))
            .serve_with_incoming_shutdown(incoming, draining);
        let served = tokio::select! {
            served = serve => served,
            () = grace_elapsed => {
                tracing::warn!(?grace, "shutdown grace elapsed, dropping remaining connections");
                Ok(())
            }
        };
        if let Some(admin) = admin {
            admin.abort();
        }
        if let Err(err) = self.db.close().await {
            tracing::warn!(error = %err, "closing the database pool");
        }
        served.context("serving gRPC")?;
        tracing::info!("order-svc stopped");
        Ok(())
    }
}

async fn set_status(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    match status {
        ServingStatus::Serving => health.set_serving::<OrderServiceServer<OrderApi>>().await,
        _ => {
            health
                .set_not_serving::<OrderServiceServer<OrderApi>>()
                .await
        }
    }
}

/// NOT_SERVING while the database does not answer, so probes route traffic elsewhere.
async fn probe_database(db: DatabaseConnection, health: HealthReporter) {
    let mut interval = tokio::time::interval(DB_PROBE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reachable = true;
    loop {
        interval.tick().await;
        let now_reachable = match db.ping().await {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(error = %err, "database unreachable");
                false
            }
        };
        if now_reachable != reachable {
            reachable = now_reachable;
            let status = if reachable {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set_status(&health, status).await;
        }
    }
}
