//! `wxpay-sim`: loads the configuration, starts telemetry, serves until Ctrl-C or SIGTERM.

use clap::Parser;
use paynotify::runtime::{init_telemetry, shutdown_signal};

#[derive(Parser)]
#[command(
    version,
    about = "A local stand-in for WeChat Pay API v2 and its notifications"
)]
struct Cli {
    #[command(flatten)]
    config: wxpay_sim::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { config } = Cli::parse();
    init_telemetry(config.log_format);
    wxpay_sim::bind(config)
        .await?
        .run_until(shutdown_signal())
        .await
}
