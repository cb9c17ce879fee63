//! One service binary as a child process: its own environment (nothing inherited but `PATH`),
//! a fixed address on 127.0.0.1 so it can be restarted where its peers expect it, stdout and
//! stderr appended to one log file across restarts, and SIGKILL when dropped.

use std::{
    collections::BTreeMap,
    fs::OpenOptions,
    io::Write as _,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use nix::{sys::signal::Signal, unistd::Pid};
use tokio::process::{Child, Command};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::binaries;

/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(50);

/// The four binaries of the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    OrderSvc,
    PaySvc,
    Gateway,
    WxpaySim,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::OrderSvc,
        Service::PaySvc,
        Service::Gateway,
        Service::WxpaySim,
    ];

    /// The executable's file name.
    pub fn binary(self) -> &'static str {
        match self {
            Service::OrderSvc => "order-svc",
            Service::PaySvc => "pay-svc",
            Service::Gateway => "gateway",
            Service::WxpaySim => "wxpay-sim",
        }
    }

    /// The environment variable with its listen address.
    pub fn addr_var(self) -> &'static str {
        match self {
            Service::OrderSvc => "ORDER_SVC_ADDR",
            Service::PaySvc => "PAY_SVC_ADDR",
            Service::Gateway => "GATEWAY_ADDR",
            Service::WxpaySim => "SIM_ADDR",
        }
    }

    /// The gRPC service whose health says "ready", for the gRPC servers.
    fn grpc_service(self) -> Option<&'static str> {
        match self {
            Service::OrderSvc => Some("order.v1.OrderService"),
            Service::PaySvc => Some("pay.v1.PayService"),
            Service::Gateway | Service::WxpaySim => None,
        }
    }
}

/// A free port on 127.0.0.1 for each of `count` services. The listeners are held until all
/// are picked, so the ports differ; another program could still take one before the service
/// binds it, which is unlikely enough on a test machine.
pub fn free_addrs(count: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("picking free ports")?;
    listeners
        .iter()
        .map(|l| l.local_addr().context("reading a picked port"))
        .collect()
}

/// One service process (running or not).
#[derive(Debug)]
pub struct Process {
    name: String,
    service: Service,
    program: PathBuf,
    addr: SocketAddr,
    env: BTreeMap<String, String>,
    log_path: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Process {
    /// Starts `service` on `addr` with `env` (plus `PATH`, `RUST_LOG=info`, `NO_COLOR=1` and
    /// the address variable), logging to `<log_dir>/<name>.log`. Does not wait for readiness.
    pub fn start(
        name: impl Into<String>,
        service: Service,
        addr: SocketAddr,
        env: BTreeMap<String, String>,
        log_dir: &Path,
    ) -> anyhow::Result<Process> {
        let name = name.into();
        let mut process = Process {
            log_path: log_dir.join(format!("{name}.log")),
            name,
            service,
            program: binaries::path(service)?,
            addr,
            env,
            child: None,
            starts: 0,
        };
        process.spawn()?;
        Ok(process)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        self.starts += 1;
        writeln!(
            log,
            "===== cluster-tests: {} start #{} on {} =====",
            self.name, self.starts, self.addr
        )?;
        let stderr = log.try_clone()?;
        let mut command = Command::new(&self.program);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            // Panics with a backtrace, but errors (anyhow) without one: a start-up error
            // must stay readable in a log tail.
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LIB_BACKTRACE", "0")
            .envs(&self.env)
            .env(self.service.addr_var(), self.addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn service(&self) -> Service {
        self.service
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Whether the process is running (started and not yet seen to exit).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits until the service answers its readiness probe: gRPC health SERVING for
    /// order-svc and pay-svc, `GET /healthz` for the gateway, `GET /sim/stats` for the
    /// simulator. Fails early, with the log's tail, if the process exits.
    pub async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "{} exited ({status}) before it was ready; log tail:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            if self.child.is_none() {
                bail!("{} is not running", self.name);
            }
            if self.probe().await {
                return Ok(());
            }
            if started.elapsed() > within {
                bail!(
                    "{} not ready within {within:?}; log tail:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// One readiness probe.
    pub async fn probe(&self) -> bool {
        match self.service.grpc_service() {
            Some(service) => grpc_serving(self.addr, service).await,
            None => {
                let path = match self.service {
                    Service::Gateway => "/healthz",
                    _ => "/sim/stats",
                };
                http_ok(&format!("{}{path}", self.url())).await
            }
        }
    }

    /// `kill -9`: no chance to drain. Waits until the process is gone.
    pub async fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        let child = self.running_child()?;
        child.start_kill()?;
        let status = child.wait().await?;
        self.child = None;
        Ok(status)
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&mut self) -> anyhow::Result<()> {
        let child = self.running_child()?;
        let pid = child.id().context("the process has already been reaped")?;
        nix::sys::signal::kill(Pid::from_raw(i32::try_from(pid)?), Signal::SIGTERM)
            .context("sending SIGTERM")?;
        Ok(())
    }

    /// Waits for the process to exit, at most `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        let child = self.running_child()?;
        match tokio::time::timeout(within, child.wait()).await {
            Ok(status) => {
                self.child = None;
                Ok(status?)
            }
            Err(_) => bail!(
                "{} still running {within:?} later; log tail:\n{}",
                self.name,
                self.log_tail(30)
            ),
        }
    }

    /// SIGTERM, then waits for the exit (at most `within`).
    pub async fn terminate(&mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        self.signal_term()?;
        self.wait_exit(within).await
    }

    /// Starts the stopped process again on the same address with the same environment and
    /// waits until it is ready.
    pub async fn restart(&mut self, within: Duration) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("{} is still running", self.name);
        }
        self.spawn()?;
        self.wait_ready(within).await
    }

    fn running_child(&mut self) -> anyhow::Result<&mut Child> {
        let name = &self.name;
        self.child
            .as_mut()
            .with_context(|| format!("{name} is not running"))
    }

    /// The whole log so far (every start).
    pub fn log_text(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Whether the gRPC server at `addr` reports `service` SERVING.
pub async fn grpc_serving(addr: SocketAddr, service: &str) -> bool {
    grpc_health(addr, service).await == Some(ServingStatus::Serving)
}

/// The health status of `service` at `addr`; `None` when there is no answer.
pub async fn grpc_health(addr: SocketAddr, service: &str) -> Option<ServingStatus> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(2));
    let channel = endpoint.connect().await.ok()?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .ok()?;
    Some(response.into_inner().status())
}

async fn http_ok(url: &str) -> bool {
    let Ok(client) = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    client
        .get(url)
        .send()
        .await
        .is_ok_and(|response| response.status().is_success())
}
