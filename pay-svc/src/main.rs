//! pay-svc's binary: settings (defaults → `--config` TOML → environment → flags), telemetry,
//! then serve until Ctrl-C/SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: pay_svc::Config = paynotify::config::load();
    paynotify::runtime::init_telemetry(config.log_format);
    let server = pay_svc::bind(config).await?;
    server
        .run_until(paynotify::runtime::shutdown_signal())
        .await
}
