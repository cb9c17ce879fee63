//! `wxpay-sim`: reads the command line (the server's settings layered over an optional TOML
//! file); `serve` (the default) checks them, starts telemetry and serves until Ctrl-C or
//! SIGTERM; every other command is a client of some server.

use std::process::ExitCode;

use paynotify::runtime::{init_telemetry, shutdown_signal};
use wxpay_sim::cli::Action;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    match wxpay_sim::cli::load().action() {
        Action::Serve(config) => {
            let checked = config.resolve_secrets().and_then(|config| {
                config.validate()?;
                Ok(config)
            });
            let config = match checked {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("error: {error}");
                    return Ok(ExitCode::from(2));
                }
            };
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
