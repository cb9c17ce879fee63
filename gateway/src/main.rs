use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = gateway::Config::parse();
    paynotify::runtime::init_telemetry(config.log_format);
    let server = gateway::bind(config).await?;
    server
        .run_until(paynotify::runtime::shutdown_signal())
        .await
}
