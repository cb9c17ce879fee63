//! Starting, restarting and stopping the services of one local stack.

use std::net::SocketAddr;

use anyhow::Context as _;
use paynotify::{
    auth::AttachBearer,
    metrics::AdminAddr,
    proto::{
        order::v1::order_service_client::OrderServiceClient,
        pay::v1::pay_service_client::PayServiceClient,
    },
};
use secrecy::SecretString;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::{service::interceptor::InterceptedService, transport::Channel};
use wxpay_sim::SimClient;

/// The token that opens every pay-svc method unless `GRPC_AUTH_TOKEN` says otherwise: the
/// demo and the README's grpcurl examples send it (see README).
pub const DEMO_GRPC_TOKEN: &str = "devstack-demo-token-0123456789";
/// The token the gateway sends to pay-svc unless `GATEWAY_AUTH_TOKEN` says otherwise: another
/// one, which opens ConfirmPayment only.
pub const DEMO_GATEWAY_TOKEN: &str = "devstack-gateway-token-0123456789";
/// The token pay-svc sends to order-svc unless `ORDER_SVC_AUTH_TOKEN` says otherwise: another
/// one, so that the gateway's does not open order-svc.
pub const DEMO_ORDER_SVC_TOKEN: &str = "devstack-order-svc-token-0123456789";

/// The default ports, as in production: gateway 9010, pay-svc 50051 (metrics 9101),
/// order-svc 50052 (metrics 9102), simulator 9020.
const DEFAULT_PORTS: Ports = Ports {
    gateway: 9010,
    pay_svc: 50051,
    order_svc: 50052,
    sim: 9020,
    pay_svc_metrics: 9101,
    order_svc_metrics: 9102,
};

#[derive(Clone, Copy, Debug)]
struct Ports {
    gateway: u16,
    pay_svc: u16,
    order_svc: u16,
    sim: u16,
    pay_svc_metrics: u16,
    order_svc_metrics: u16,
}

/// What differs between one local stack and another.
#[derive(Clone, Debug)]
pub struct StackConfig {
    pub database_url: String,
    pub appid: String,
    pub mch_id: String,
    pub api_key: SecretString,
    /// WeChat Pay's API; `None` means the in-process simulator.
    pub api_base: Option<String>,
    /// The notify_url sent to WeChat; `None` means this stack's gateway.
    pub notify_url: Option<String>,
    /// The token that opens every pay-svc method ([`Stack::pay_client`] sends it). `None`
    /// turns internal gRPC authentication off on that hop (then `gateway_auth_token` must be
    /// `None` too; with `order_svc_auth_token` also `None`, it is off on the other).
    pub grpc_auth_token: Option<SecretString>,
    /// The gateway's token, which opens pay-svc's ConfirmPayment only (pay-svc's
    /// GATEWAY_AUTH_TOKEN, the gateway's GRPC_AUTH_TOKEN). `None`: the gateway sends
    /// `grpc_auth_token`, as before pay-svc had GATEWAY_AUTH_TOKEN.
    pub gateway_auth_token: Option<SecretString>,
    /// The token order-svc requires; pay-svc sends it. Another one than `grpc_auth_token`, so
    /// that the gateway's token does not open order-svc.
    pub order_svc_auth_token: Option<SecretString>,
    /// The simulator's time scale (1.0 = WeChat's real retry schedule).
    pub sim_time_scale: f64,
    /// pay-svc's reconciliation sweep interval in seconds (0 = off).
    pub reconcile_interval_secs: u64,
    pub reconcile_min_age_secs: u64,
    /// Listen on the default ports (devstack) or on free ones (tests).
    pub default_ports: bool,
}

impl StackConfig {
    /// The demo merchant on the default ports with a SQLite file under `./data/`.
    pub fn demo() -> Self {
        StackConfig {
            database_url: order_svc::config::DEFAULT_DATABASE_URL.to_owned(),
            appid: wxpay_sim::config::DEMO_APPID.to_owned(),
            mch_id: wxpay_sim::config::DEMO_MCH_ID.to_owned(),
            api_key: wxpay_sim::config::DEMO_API_KEY.to_owned().into(),
            api_base: None,
            notify_url: None,
            grpc_auth_token: Some(DEMO_GRPC_TOKEN.to_owned().into()),
            gateway_auth_token: Some(DEMO_GATEWAY_TOKEN.to_owned().into()),
            order_svc_auth_token: Some(DEMO_ORDER_SVC_TOKEN.to_owned().into()),
            sim_time_scale: 1.0,
            reconcile_interval_secs: 60,
            reconcile_min_age_secs: 300,
            default_ports: true,
        }
    }

    /// The demo merchant on free ports over `database_url`, with WeChat's retry schedule
    /// compressed a thousandfold and no reconciliation: what end-to-end tests want.
    pub fn for_tests(database_url: impl Into<String>) -> Self {
        StackConfig {
            database_url: database_url.into(),
            sim_time_scale: 0.001,
            reconcile_interval_secs: 0,
            default_ports: false,
            ..StackConfig::demo()
        }
    }

    fn ports(&self) -> Ports {
        if self.default_ports {
            DEFAULT_PORTS
        } else {
            Ports {
                gateway: 0,
                pay_svc: 0,
                order_svc: 0,
                sim: 0,
                pay_svc_metrics: 0,
                order_svc_metrics: 0,
            }
        }
    }
}

/// One running service: how to stop it and wait for it.
struct Running {
    name: &'static str,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn spawn<F>(name: &'static str, run: impl FnOnce(CancellationToken) -> F) -> Running
    where
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(stop.clone()));
        Running { name, stop, task }
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task
            .await
            .with_context(|| format!("{} panicked", self.name))?
            .with_context(|| format!("{} failed", self.name))
    }
}

/// A running stack. Stop it with [`Stack::shutdown`]; dropping it stops the services too,
/// without waiting for them.
///
/// The services share this process's one metrics registry, so the gateway's `/metrics` and
/// both admin ports show the same page: every service's series.
pub struct Stack {
    pub gateway: SocketAddr,
    pub pay_svc: SocketAddr,
    pub order_svc: SocketAddr,
    pub sim: SocketAddr,
    /// pay-svc's admin port (`GET /metrics`, `GET /healthz`).
    pub pay_svc_metrics: SocketAddr,
    /// order-svc's admin port.
    pub order_svc_metrics: SocketAddr,
    pub config: StackConfig,
    // In shutdown order: the front first, so no new work arrives while the rest drains.
    gateway_task: Option<Running>,
    pay_svc_task: Option<Running>,
    order_svc_task: Option<Running>,
    sim_task: Option<Running>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for running in [
            &self.gateway_task,
            &self.pay_svc_task,
            &self.order_svc_task,
            &self.sim_task,
        ]
        .into_iter()
        .flatten()
        {
            running.stop.cancel();
        }
    }
}

impl Stack {
    /// Starts every service and returns once all of them listen.
    pub async fn start(config: StackConfig) -> anyhow::Result<Stack> {
        let ports = config.ports();

        let (order_svc, order_svc_metrics, order_svc_task) =
            start_order_svc(&config, ports.order_svc, ports.order_svc_metrics).await?;

        let mut sim_config = wxpay_sim::Config {
            addr: SocketAddr::from(([127, 0, 0, 1], ports.sim)),
            time_scale: config.sim_time_scale,
            ..wxpay_sim::Config::default()
        };
        sim_config.merchant.appid = config.appid.clone();
        sim_config.merchant.mch_id = config.mch_id.clone();
        sim_config.merchant.api_key = config.api_key.clone();
        let sim_server = wxpay_sim::bind(sim_config).await.context("wxpay-sim")?;
        let sim = sim_server.local_addr();
        let sim_task = Running::spawn("wxpay-sim", |stop| {
            sim_server.run_until(async move { stop.cancelled().await })
        });

        // The gateway's address is pay-svc's notify_url and pay-svc's is the gateway's
        // upstream: bind the gateway's socket first, serve it last.
        let gateway_listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], ports.gateway)))
            .await
            .with_context(|| format!("gateway: cannot listen on port {}", ports.gateway))?;
        let gateway = gateway_listener.local_addr()?;

        let mut pay_config = pay_svc::Config {
            addr: SocketAddr::from(([127, 0, 0, 1], ports.pay_svc)),
            order_svc_url: format!("http://{order_svc}"),
            wxpay_appid: config.appid.clone(),
            wxpay_mch_id: config.mch_id.clone(),
            wxpay_api_key: config.api_key.clone(),
            wxpay_api_base: config
                .api_base
                .clone()
                .unwrap_or_else(|| format!("http://{sim}")),
            wxpay_notify_url: config
                .notify_url
                .clone()
                .unwrap_or_else(|| format!("http://{gateway}/wxpay/notify")),
            grpc_auth_token: config.grpc_auth_token.clone(),
            gateway_auth_token: config.gateway_auth_token.clone(),
            order_svc_auth_token: config.order_svc_auth_token.clone(),
            grpc_allow_unauthenticated: config.grpc_auth_token.is_none(),
            reconcile_interval_secs: config.reconcile_interval_secs,
            reconcile_min_age_secs: config.reconcile_min_age_secs,
            metrics_addr: AdminAddr(Some(SocketAddr::from((
                [127, 0, 0, 1],
                ports.pay_svc_metrics,
            )))),
            ..pay_svc::Config::default()
        };
        pay_config.wxpay_api_backup_base = None;
        pay_config.validate().context("pay-svc")?;
        let pay_server = pay_svc::bind(pay_config).await.context("pay-svc")?;
        let pay_svc = pay_server.local_addr();
        let pay_svc_metrics = pay_server
            .metrics_addr()
            .context("pay-svc: no metrics address")?;
        let pay_svc_task = Running::spawn("pay-svc", |stop| {
            pay_server.run_until(async move { stop.cancelled().await })
        });

        let mut gateway_config = gateway::Config::for_pay_svc(format!("http://{pay_svc}"));
        gateway_config.addr = gateway;
        // The gateway holds its own token, the one that opens ConfirmPayment only.
        gateway_config.grpc_auth_token = config
            .gateway_auth_token
            .clone()
            .or_else(|| config.grpc_auth_token.clone());
        gateway_config.grpc_allow_unauthenticated = gateway_config.grpc_auth_token.is_none();
        let gateway_server =
            gateway::serve_on(gateway_listener, gateway_config).context("gateway")?;
        let gateway_task = Running::spawn("gateway", |stop| {
            gateway_server.run_until(async move { stop.cancelled().await })
        });

        Ok(Stack {
            gateway,
            pay_svc,
            order_svc,
            sim,
            pay_svc_metrics,
            order_svc_metrics,
            config,
            gateway_task: Some(gateway_task),
            pay_svc_task: Some(pay_svc_task),
            order_svc_task: Some(order_svc_task),
            sim_task: Some(sim_task),
        })
    }

    /// Stops order-svc (as a crash or a deploy would), leaving the rest running.
    pub async fn stop_order_svc(&mut self) -> anyhow::Result<()> {
        match self.order_svc_task.take() {
            Some(running) => running.stop().await,
            None => Ok(()),
        }
    }

    /// Starts order-svc again on the same port and database.
    pub async fn restart_order_svc(&mut self) -> anyhow::Result<()> {
        self.stop_order_svc().await?;
        let (_, _, running) = start_order_svc(
            &self.config,
            self.order_svc.port(),
            self.order_svc_metrics.port(),
        )
        .await?;
        self.order_svc_task = Some(running);
        Ok(())
    }

    /// Stops every service, front first, and reports the first failure.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        for running in [
            self.gateway_task.take(),
            self.pay_svc_task.take(),
            self.order_svc_task.take(),
            self.sim_task.take(),
        ]
        .into_iter()
        .flatten()
        {
            let stopped = running.stop().await;
            if result.is_ok() {
                result = stopped;
            }
        }
        result
    }

    pub fn notify_url(&self) -> String {
        format!("http://{}/wxpay/notify", self.gateway)
    }

    pub fn sim_client(&self) -> SimClient {
        SimClient::new(format!("http://{}", self.sim))
    }

    /// An order-svc client that carries order-svc's token (as pay-svc does).
    pub fn order_client(
        &self,
    ) -> anyhow::Result<OrderServiceClient<InterceptedService<Channel, AttachBearer>>> {
        let channel = Channel::from_shared(format!("http://{}", self.order_svc))?.connect_lazy();
        let auth = AttachBearer::new(self.config.order_svc_auth_token.as_ref())?;
        Ok(OrderServiceClient::with_interceptor(channel, auth))
    }

    /// A pay-svc client that carries the token that opens every method (as the merchant's
    /// systems do; the gateway's opens ConfirmPayment only).
    pub fn pay_client(
        &self,
    ) -> anyhow::Result<PayServiceClient<InterceptedService<Channel, AttachBearer>>> {
        let channel = Channel::from_shared(format!("http://{}", self.pay_svc))?.connect_lazy();
        let auth = AttachBearer::new(self.config.grpc_auth_token.as_ref())?;
        Ok(PayServiceClient::with_interceptor(channel, auth))
    }
}

/// order-svc on `port`, its metrics on `metrics_port`; returns both addresses.
async fn start_order_svc(
    config: &StackConfig,
    port: u16,
    metrics_port: u16,
) -> anyhow::Result<(SocketAddr, SocketAddr, Running)> {
    let mut order_config =
        order_svc::Config::for_database(&config.database_url).context("order-svc")?;
    order_config.listen_addr = SocketAddr::from(([127, 0, 0, 1], port));
    order_config.metrics_addr = AdminAddr(Some(SocketAddr::from(([127, 0, 0, 1], metrics_port))));
    order_config.grpc_auth_token = config.order_svc_auth_token.clone();
    let server = order_svc::bind(order_config).await.context("order-svc")?;
    let addr = server.local_addr();
    let metrics = server
        .metrics_addr()
        .context("order-svc: no metrics address")?;
    let running = Running::spawn("order-svc", |stop| {
        server.run_until(async move { stop.cancelled().await })
    });
    Ok((addr, metrics, running))
}
