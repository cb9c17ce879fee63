//! The order-svc binary: configuration from flags and environment, then the server until
//! Ctrl-C or SIGTERM.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = order_svc::Config::try_from(order_svc::config::Args::parse())?;
    paynotify::runtime::init_telemetry(config.log_format);
    let server = order_svc::bind(config).await?;
    server
        .run_until(paynotify::runtime::shutdown_signal())
        .await
}
