//! A whole deployment as separate processes: N order-svc over one database, N pay-svc
//! (`ORDER_SVC_URL` = every order-svc), N gateways (`PAY_SVC_URL` = every pay-svc), one
//! simulator playing WeChat Pay, and optionally a [`Balancer`] in front of the gateways. The
//! internal gRPC calls carry bearer tokens made up per cluster: the gateways' to pay-svc
//! (its GATEWAY_AUTH_TOKEN, ConfirmPayment only), another from pay-svc to order-svc, and
//! pay-svc has a third that opens all its methods (GRPC_AUTH_TOKEN), which nothing here sends.

use std::{collections::BTreeMap, net::SocketAddr, path::Path, time::Duration};

use anyhow::Context;
use futures::future::try_join_all;
use paynotify::{auth::AttachBearer, proto::order::v1::order_service_client::OrderServiceClient};
use secrecy::SecretString;
use tempfile::TempDir;
use tonic::{service::interceptor::InterceptedService, transport::Channel};
use wxpay_sim::{DEMO_API_KEY, DEMO_APPID, DEMO_MCH_ID, SimClient};

use crate::{
    balancer::Balancer,
    process::{Process, Service, free_addrs},
    report,
};

/// How long a process may take to become ready (order-svc migrates first).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// An authenticated order-svc client.
pub type OrderClient = OrderServiceClient<InterceptedService<Channel, AttachBearer>>;

/// What to start. Extra environment variables go to every process of that service (after the
/// harness's own, so they win).
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub database_url: String,
    pub order_svcs: usize,
    pub pay_svcs: usize,
    pub gateways: usize,
    /// Start a [`Balancer`] in front of the gateways; pay-svc's notify_url points at it.
    pub balancer: bool,
    pub sim_env: BTreeMap<String, String>,
    pub order_env: BTreeMap<String, String>,
    pub pay_env: BTreeMap<String, String>,
    pub gateway_env: BTreeMap<String, String>,
}

impl ClusterConfig {
    /// `order_svcs` order-svc over `database_url`, `pay_svcs` pay-svc, `gateways` gateways,
    /// the simulator in real time with no faults, reconciliation off.
    pub fn new(
        database_url: impl Into<String>,
        order_svcs: usize,
        pay_svcs: usize,
        gateways: usize,
    ) -> Self {
        ClusterConfig {
            database_url: database_url.into(),
            order_svcs,
            pay_svcs,
            gateways,
            balancer: false,
            sim_env: BTreeMap::new(),
            order_env: BTreeMap::new(),
            pay_env: BTreeMap::new(),
            gateway_env: BTreeMap::new(),
        }
    }

    pub fn with_balancer(mut self) -> Self {
        self.balancer = true;
        self
    }

    pub fn sim(mut self, key: &str, value: impl ToString) -> Self {
        self.sim_env.insert(key.into(), value.to_string());
        self
    }

    pub fn order_svc(mut self, key: &str, value: impl ToString) -> Self {
        self.order_env.insert(key.into(), value.to_string());
        self
    }

    pub fn pay_svc(mut self, key: &str, value: impl ToString) -> Self {
        self.pay_env.insert(key.into(), value.to_string());
        self
    }

    pub fn gateway(mut self, key: &str, value: impl ToString) -> Self {
        self.gateway_env.insert(key.into(), value.to_string());
        self
    }
}

/// A running cluster. Dropping it kills every process; after a panic it first prints each
/// process's log tail and keeps the log directory.
#[derive(Debug)]
pub struct Cluster {
    pub sim: Process,
    pub order_svcs: Vec<Process>,
    pub pay_svcs: Vec<Process>,
    pub gateways: Vec<Process>,
    pub balancer: Option<Balancer>,
    /// What order-svc requires (pay-svc's ORDER_SVC_AUTH_TOKEN).
    order_svc_token: String,
    dir: Option<TempDir>,
}

impl Cluster {
    /// Starts every process at once (order-svc migrations race, as in a real rollout) and
    /// waits until all are ready.
    pub async fn start(config: ClusterConfig) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("cluster-tests-")
            .tempdir()
            .context("creating the log directory")?;
        let token = format!("cluster-tests-{}", hex::encode(rand::random::<[u8; 12]>()));
        let gateway_token = format!(
            "cluster-tests-gateway-{}",
            hex::encode(rand::random::<[u8; 12]>())
        );
        let order_svc_token = format!(
            "cluster-tests-order-svc-{}",
            hex::encode(rand::random::<[u8; 12]>())
        );
        // Each service's port, plus an admin (`METRICS_ADDR`) port for every order-svc and
        // pay-svc: their fixed defaults would collide between replicas.
        let count = 1 + 2 * (config.order_svcs + config.pay_svcs) + config.gateways;
        let mut addrs = free_addrs(count)?.into_iter();
        let mut take = |n: usize| -> Vec<SocketAddr> { addrs.by_ref().take(n).collect() };
        let sim_addr = take(1)[0];
        let order_addrs = take(config.order_svcs);
        let pay_addrs = take(config.pay_svcs);
        let gateway_addrs = take(config.gateways);
        let order_metrics = take(config.order_svcs);
        let pay_metrics = take(config.pay_svcs);

        let balancer = if config.balancer {
            Some(Balancer::start(gateway_addrs.clone()).await?)
        } else {
            None
        };
        let notify_url = match (&balancer, gateway_addrs.first()) {
            (Some(balancer), _) => balancer.notify_url(),
            (None, Some(gateway)) => format!("http://{gateway}/wxpay/notify"),
            (None, None) => "http://127.0.0.1:9/wxpay/notify".to_owned(),
        };
        let urls = |addrs: &[SocketAddr]| {
            addrs
                .iter()
                .map(|a| format!("http://{a}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let log_dir = dir.path();

        let sim = Process::start(
            "wxpay-sim",
            Service::WxpaySim,
            sim_addr,
            env(
                [
                    ("WXPAY_APPID", DEMO_APPID),
                    ("WXPAY_MCH_ID", DEMO_MCH_ID),
                    ("WXPAY_API_KEY", DEMO_API_KEY),
                ],
                &config.sim_env,
            ),
            log_dir,
        )?;
        let order_svcs = start_all(
            "order-svc",
            Service::OrderSvc,
            &order_addrs,
            &order_metrics,
            env(
                [
                    ("DATABASE_URL", config.database_url.as_str()),
                    ("GRPC_AUTH_TOKEN", order_svc_token.as_str()),
                ],
                &config.order_env,
            ),
            log_dir,
        )?;
        let order_urls = urls(&order_addrs);
        let sim_url = format!("http://{sim_addr}");
        let pay_svcs = start_all(
            "pay-svc",
            Service::PaySvc,
            &pay_addrs,
            &pay_metrics,
            env(
                [
                    ("ORDER_SVC_URL", order_urls.as_str()),
                    ("WXPAY_APPID", DEMO_APPID),
                    ("WXPAY_MCH_ID", DEMO_MCH_ID),
                    ("WXPAY_API_KEY", DEMO_API_KEY),
                    ("WXPAY_API_BASE", sim_url.as_str()),
                    ("WXPAY_NOTIFY_URL", notify_url.as_str()),
                    ("GRPC_AUTH_TOKEN", token.as_str()),
                    ("GATEWAY_AUTH_TOKEN", gateway_token.as_str()),
                    ("ORDER_SVC_AUTH_TOKEN", order_svc_token.as_str()),
                    ("RECONCILE_INTERVAL_SECS", "0"),
                ],
                &config.pay_env,
            ),
            log_dir,
        )?;
        let pay_urls = urls(&pay_addrs);
        let gateways = start_all(
            "gateway",
            Service::Gateway,
            &gateway_addrs,
            &[],
            env(
                [
                    ("PAY_SVC_URL", pay_urls.as_str()),
                    ("GRPC_AUTH_TOKEN", gateway_token.as_str()),
                ],
                &config.gateway_env,
            ),
            log_dir,
        )?;

        let mut cluster = Cluster {
            sim,
            order_svcs,
            pay_svcs,
            gateways,
            balancer,
            order_svc_token,
            dir: Some(dir),
        };
        let Cluster {
            sim,
            order_svcs,
            pay_svcs,
            gateways,
            ..
        } = &mut cluster;
        let ready = try_join_all(
            std::iter::once(sim)
                .chain(order_svcs.iter_mut())
                .chain(pay_svcs.iter_mut())
                .chain(gateways.iter_mut())
                .map(|p| p.wait_ready(READY_WITHIN)),
        )
        .await;
        if let Err(error) = ready {
            cluster.print_log_tails(20);
            cluster.keep_logs();
            return Err(error);
        }
        Ok(cluster)
    }

    /// The simulator's control API.
    pub fn sim_client(&self) -> SimClient {
        SimClient::new(self.sim.url())
    }

    /// A client of the `index`th order-svc carrying its bearer token.
    pub fn order_client(&self, index: usize) -> anyhow::Result<OrderClient> {
        let channel = Channel::from_shared(self.order_svcs[index].url())?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        let token = SecretString::from(self.order_svc_token.clone());
        Ok(OrderServiceClient::with_interceptor(
            channel,
            AttachBearer::new(Some(&token))?,
        ))
    }

    /// The `index`th gateway's notify URL.
    pub fn gateway_notify_url(&self, index: usize) -> String {
        format!("{}/wxpay/notify", self.gateways[index].url())
    }

    /// The notify_url WeChat should use: the balancer's, or else the first gateway's.
    pub fn notify_url(&self) -> String {
        match &self.balancer {
            Some(balancer) => balancer.notify_url(),
            None => self.gateway_notify_url(0),
        }
    }

    /// The concatenated logs of every process of `service`.
    pub fn logs_of(&self, service: Service) -> String {
        self.processes()
            .filter(|p| p.service() == service)
            .map(Process::log_text)
            .collect()
    }

    /// Every process, simulator first.
    pub fn processes(&self) -> impl Iterator<Item = &Process> {
        std::iter::once(&self.sim)
            .chain(&self.order_svcs)
            .chain(&self.pay_svcs)
            .chain(&self.gateways)
    }

    pub fn log_dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(TempDir::path)
    }

    /// Keeps the log directory after the cluster is gone, and says where it is.
    pub fn keep_logs(&mut self) {
        if let Some(dir) = self.dir.take() {
            report(format!("cluster logs kept in {}", dir.keep().display()));
        }
    }

    /// Prints the last `lines` of every process's log.
    pub fn print_log_tails(&self, lines: usize) {
        for process in self.processes() {
            report(format!(
                "----- {} ({}) -----\n{}",
                process.name(),
                process.log_path().display(),
                process.log_tail(lines)
            ));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let keep = std::env::var_os("CLUSTER_KEEP_LOGS").is_some();
        if std::thread::panicking() {
            self.print_log_tails(40);
        }
        if std::thread::panicking() || keep {
            self.keep_logs();
        }
    }
}

fn env<'a>(
    base: impl IntoIterator<Item = (&'a str, &'a str)>,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = base
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    env.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// Starts one process per address; `metrics_addrs`, when not empty, gives each its
/// `METRICS_ADDR`.
fn start_all(
    name: &str,
    service: Service,
    addrs: &[SocketAddr],
    metrics_addrs: &[SocketAddr],
    env: BTreeMap<String, String>,
    log_dir: &Path,
) -> anyhow::Result<Vec<Process>> {
    addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let mut env = env.clone();
            if let Some(metrics) = metrics_addrs.get(i) {
                env.insert("METRICS_ADDR".to_owned(), metrics.to_string());
            }
            Process::start(format!("{name}-{}", i + 1), service, *addr, env, log_dir)
        })
        .collect()
}
