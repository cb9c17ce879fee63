//! The real stack as separate processes: the release binaries of wxpay-sim, order-svc, pay-svc
//! and the gateway (and the bare ack server, which is this binary), each on a free port of
//! 127.0.0.1, configured through the environment exactly as in production. Separate processes
//! so each one's peak memory and CPU time can be read from `/proc`.

use std::{
    fs::File,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use paynotify::{
    auth::AttachBearer,
    proto::order::v1::{GetOrderRequest, order_service_client::OrderServiceClient},
};
use secrecy::SecretString;
use tonic::{service::interceptor::InterceptedService, transport::Channel};
use tonic_health::pb::health_client::HealthClient;
use wxpay_sim::{DEMO_API_KEY, DEMO_APPID, DEMO_MCH_ID, SimClient};

use crate::procfs;

/// The token that opens every pay-svc method (only ever on 127.0.0.1).
pub const GRPC_TOKEN: &str = "bench-grpc-token-0123456789abcdef";
/// The token the benchmark's gateway sends to pay-svc, which opens ConfirmPayment only: the
/// secure setup is the one measured.
pub const GATEWAY_TOKEN: &str = "bench-gateway-token-0123456789abcdef";
/// The token pay-svc (and the benchmark's own client) sends to order-svc: another one, as
/// pay-svc requires.
pub const ORDER_SVC_TOKEN: &str = "bench-order-svc-token-0123456789abcdef";
/// How long a service may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub type OrderClient = OrderServiceClient<InterceptedService<Channel, AttachBearer>>;

/// One service process; killed when dropped.
pub struct Service {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub pid: u32,
    log: PathBuf,
    child: Child,
}

impl Service {
    fn spawn(
        name: &'static str,
        binary: &Path,
        args: &[&str],
        addr: SocketAddr,
        env: &[(&str, String)],
        settings: &Settings,
    ) -> anyhow::Result<Service> {
        let log = settings.work_dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut command = Command::new(binary);
        // Nothing from the caller's environment leaks in: every setting is named here.
        command
            .args(args)
            .env_clear()
            .env("RUST_LOG", &settings.service_log)
            .env("LOG_FORMAT", "text")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Service {
            name,
            addr,
            pid: child.id(),
            log,
            child,
        })
    }

    /// Waits until the service accepts connections; fails with its log if it exits first.
    async fn wait_listening(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited with {status} before listening; its log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "{} did not listen on {} within {START_TIMEOUT:?}; its log:\n{}",
                    self.name,
                    self.addr,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last lines of the service's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn peak_rss(&self) -> Option<u64> {
        procfs::peak_rss(self.pid)
    }

    pub fn cpu_time(&self) -> Option<Duration> {
        procfs::cpu_time(self.pid)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the binaries are and how the services run.
#[derive(Clone, Debug)]
pub struct Settings {
    pub bin_dir: PathBuf,
    pub work_dir: PathBuf,
    pub database_url: String,
    /// `RUST_LOG` of every service.
    pub service_log: String,
    /// `DB_MAX_CONNECTIONS` of order-svc, when set.
    pub db_max_connections: Option<u32>,
}

/// The four services (the simulator playing WeChat) and the bare ack server.
pub struct Stack {
    // Field order is drop order: the front first.
    pub gateway: Service,
    pub pay_svc: Service,
    pub order_svc: Service,
    pub sim: Service,
    pub ack_server: Service,
    pub sim_client: SimClient,
    pub order_client: OrderClient,
    /// order-svc's standard health service on the same channel: a gRPC call that does no work.
    pub order_health: HealthClient<Channel>,
    /// The admin ports serving `/metrics` of pay-svc and order-svc.
    pub pay_metrics: SocketAddr,
    pub order_metrics: SocketAddr,
}

impl Stack {
    /// Starts every process on free ports and waits until each listens.
    pub async fn start(settings: &Settings) -> anyhow::Result<Stack> {
        let [
            sim_addr,
            order_addr,
            pay_addr,
            gateway_addr,
            ack_addr,
            order_metrics,
            pay_metrics,
        ] = free_ports()?;
        let binary = |name: &str| -> anyhow::Result<PathBuf> {
            let path = settings.bin_dir.join(name);
            if !path.is_file() {
                bail!(
                    "{} not found; build the stack first: cargo build --release -p order-svc \
                     -p pay-svc -p gateway -p wxpay-sim -p bench (or pass --bin-dir)",
                    path.display()
                );
            }
            Ok(path)
        };
        let token = GRPC_TOKEN.to_owned();
        let gateway_token = GATEWAY_TOKEN.to_owned();
        let order_token = ORDER_SVC_TOKEN.to_owned();

        let mut sim = Service::spawn(
            "wxpay-sim",
            &binary("wxpay-sim")?,
            &["serve"],
            sim_addr,
            &[("SIM_ADDR", sim_addr.to_string())],
            settings,
        )?;
        let mut order_env = vec![
            ("ORDER_SVC_ADDR", order_addr.to_string()),
            ("DATABASE_URL", settings.database_url.clone()),
            ("GRPC_AUTH_TOKEN", order_token.clone()),
            // Free admin ports (here and for pay-svc), not the defaults 9101 and 9102: the tool
            // must run beside devstack or another run.
            ("METRICS_ADDR", order_metrics.to_string()),
        ];
        if let Some(max) = settings.db_max_connections {
            order_env.push(("DB_MAX_CONNECTIONS", max.to_string()));
        }
        let mut order_svc = Service::spawn(
            "order-svc",
            &binary("order-svc")?,
            &[],
            order_addr,
            &order_env,
            settings,
        )?;
        let mut pay_svc = Service::spawn(
            "pay-svc",
            &binary("pay-svc")?,
            &[],
            pay_addr,
            &[
                ("PAY_SVC_ADDR", pay_addr.to_string()),
                ("METRICS_ADDR", pay_metrics.to_string()),
                ("ORDER_SVC_URL", format!("http://{order_addr}")),
                // The simulator's merchant: pay-svc has no built-in one.
                ("WXPAY_APPID", DEMO_APPID.into()),
                ("WXPAY_MCH_ID", DEMO_MCH_ID.into()),
                ("WXPAY_API_KEY", DEMO_API_KEY.into()),
                ("WXPAY_API_BASE", format!("http://{sim_addr}")),
                (
                    "WXPAY_NOTIFY_URL",
                    format!("http://{gateway_addr}/wxpay/notify"),
                ),
                ("GRPC_AUTH_TOKEN", token),
                ("GATEWAY_AUTH_TOKEN", gateway_token.clone()),
                ("ORDER_SVC_AUTH_TOKEN", order_token.clone()),
                // Reconciliation would query the unpaid seeded orders in the background and
                // blur the orderquery count; the notification path is what is measured.
                ("RECONCILE_INTERVAL_SECS", "0".into()),
            ],
            settings,
        )?;
        let mut gateway = Service::spawn(
            "gateway",
            &binary("gateway")?,
            &[],
            gateway_addr,
            &[
                ("GATEWAY_ADDR", gateway_addr.to_string()),
                ("PAY_SVC_URL", format!("http://{pay_addr}")),
                ("GRPC_AUTH_TOKEN", gateway_token),
            ],
            settings,
        )?;
        let mut ack_server = Service::spawn(
            "ack-server",
            &std::env::current_exe()?,
            &["ack-server", "--addr", &ack_addr.to_string()],
            ack_addr,
            &[],
            settings,
        )?;
        for service in [
            &mut sim,
            &mut order_svc,
            &mut pay_svc,
            &mut gateway,
            &mut ack_server,
        ] {
            service.wait_listening().await?;
            println!(
                "  {:<10} pid {:>7} on {}",
                service.name, service.pid, service.addr
            );
        }

        let channel = tonic::transport::Endpoint::from_shared(format!("http://{order_addr}"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .context("connecting to order-svc")?;
        let auth = AttachBearer::new(Some(&SecretString::from(order_token)))?;
        let order_health = HealthClient::new(channel.clone());
        let order_client = OrderServiceClient::with_interceptor(channel, auth);
        // A call that needs the database and the token: NOT_FOUND proves both work.
        let probe = order_client
            .clone()
            .get_order(GetOrderRequest {
                id: "bench-probe".into(),
            })
            .await;
        match probe {
            Err(status) if status.code() == tonic::Code::NotFound => {}
            other => bail!("order-svc probe: expected NOT_FOUND, got {other:?}"),
        }
        let sim_client = SimClient::new(format!("http://{sim_addr}"));
        sim_client
            .stats()
            .await
            .context("the simulator's control API")?;

        Ok(Stack {
            gateway,
            pay_svc,
            order_svc,
            sim,
            ack_server,
            sim_client,
            order_client,
            order_health,
            pay_metrics,
            order_metrics,
        })
    }

    pub fn notify_url(&self) -> String {
        format!("http://{}/wxpay/notify", self.gateway.addr)
    }

    /// The services whose memory and CPU are reported, the simulator last (it stands in for
    /// WeChat and keeps every order in memory by design).
    pub fn services(&self) -> [&Service; 4] {
        [&self.gateway, &self.pay_svc, &self.order_svc, &self.sim]
    }

    /// Fails, with the service's log, if any process has died.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for service in [
            &mut self.gateway,
            &mut self.pay_svc,
            &mut self.order_svc,
            &mut self.sim,
            &mut self.ack_server,
        ] {
            if !service.alive() {
                bail!("{} died; its log:\n{}", service.name, service.log_tail());
            }
        }
        Ok(())
    }
}

/// Distinct free ports on 127.0.0.1, all held until all are chosen.
fn free_ports<const N: usize>() -> anyhow::Result<[SocketAddr; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("finding free local ports")?;
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<Result<_, _>>()?;
    addrs
        .try_into()
        .map_err(|_| anyhow::anyhow!("port count mismatch"))
}

/// The directory of the running executable: `target/release` when run through cargo.
pub fn default_bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the bench executable")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("the bench executable has no directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_loopback_ports() {
        let ports: [SocketAddr; 7] = free_ports().unwrap();
        for (i, a) in ports.iter().enumerate() {
            assert!(a.ip().is_loopback());
            assert!(ports[i + 1..].iter().all(|b| b.port() != a.port()));
        }
    }
}
