//! Wiring: the state every handler shares, the router (WeChat endpoints + control API),
//! binding the listener, and running until shutdown — after which notification schedules are
//! cancelled and awaited, so nothing is left running.

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use axum::{Router, routing::get};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::info;

use crate::{api, config::Config, control, faults::FaultInjector, state::Store, stats::Stats};

/// What the handlers and background deliveries share.
pub(crate) struct App {
    pub config: Config,
    pub store: Store,
    pub stats: Stats,
    pub faults: FaultInjector,
    /// Sends notifications: no redirects followed, no proxy, the reply deadline per request.
    pub http: reqwest::Client,
    /// Cancelled when the server shuts down; schedules run on child tokens of it.
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

/// A bound, not yet running simulator.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    app: Arc<App>,
}

/// Validates `config` and binds its address (`127.0.0.1:0` picks a free port).
pub async fn bind(config: Config) -> anyhow::Result<Server> {
    let config = config
        .resolve_secrets()
        .context("invalid wxpay-sim configuration")?;
    config
        .validate()
        .context("invalid wxpay-sim configuration")?;
    let listener = TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("cannot listen on {} (SIM_ADDR)", config.addr))?;
    let local_addr = listener.local_addr()?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(config.reply_deadline())
        .user_agent(concat!("wxpay-sim/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the notification HTTP client")?;
    let faults = FaultInjector::new(config.faults.clone(), config.seed);
    let app = App {
        config,
        store: Store::default(),
        stats: Stats::default(),
        faults,
        http,
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
    };
    Ok(Server {
        listener,
        local_addr,
        app: Arc::new(app),
    })
}

impl Server {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://<local_addr>`: the base URL for WeChat API calls and [`crate::SimClient`].
    pub fn base_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Serves until `shutdown` resolves, then stops accepting, cancels notification
    /// schedules, and waits for in-flight requests and deliveries to end.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Server {
            listener,
            local_addr,
            app,
        } = self;
        let router = Router::new()
            .merge(api::routes())
            .merge(control::routes())
            .route("/healthz", get(|| async { "ok" }))
            .with_state(Arc::clone(&app));
        info!(
            %local_addr,
            appid = %app.config.merchant.appid,
            mch_id = %app.config.merchant.mch_id,
            time_scale = app.config.time_scale,
            reply_deadline_ms = app.config.reply_deadline().as_millis(),
            faults = ?app.config.faults,
            "wxpay-sim listening"
        );
        let token = app.shutdown.clone();
        // Cancel whatever happens, so no delivery outlives the server.
        let _cancel_on_exit = token.clone().drop_guard();
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                token.cancel();
            })
            .await;
        app.shutdown.cancel();
        app.tasks.close();
        app.tasks.wait().await;
        info!("wxpay-sim stopped");
        served.context("serving HTTP")
    }
}
