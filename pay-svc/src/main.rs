//! pay-svc's binary: settings from flags and environment, telemetry, serve until Ctrl-C/SIGTERM.

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = pay_svc::Config::parse();
    paynotify::runtime::init_telemetry(config.log_format);
    let server = pay_svc::bind(config).await?;
    server
        .run_until(paynotify::runtime::shutdown_signal())
        .await
}
