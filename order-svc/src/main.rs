//! The order-svc binary: configuration from flags and environment, then the server until
//! Ctrl-C or SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = order_svc::Config::load()?;
    paynotify::runtime::init_telemetry(config.log_format);
    let server = order_svc::bind(config).await?;
    server
        .run_until(paynotify::runtime::shutdown_signal())
        .await
}
