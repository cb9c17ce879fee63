//! `wxpay-sim`: parses the command line; `serve` (the default) starts telemetry and serves
//! until Ctrl-C or SIGTERM, every other command is a client of some server.

use std::process::ExitCode;

use clap::Parser;
use paynotify::runtime::{init_telemetry, shutdown_signal};
use wxpay_sim::cli::{Action, Cli};

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().action() {
        Action::Serve(config) => {
            init_telemetry(config.log_format);
            wxpay_sim::bind(config)
                .await?
                .run_until(shutdown_signal())
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Action::Tool(tool) => Ok(tool.run(&mut std::io::stdout()).await?.into()),
    }
}
