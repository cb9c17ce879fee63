//! `bench`: parses the command line, then runs the scenarios (or, as its own process, the
//! bare HTTP floor server).

use std::process::ExitCode;

use bench::cli::{Cli, Command};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let options = match cli.command {
        Some(Command::AckServer { addr }) => {
            bench::ack_server::serve(addr).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Run(options)) => *options,
        None => cli.run,
    };
    Ok(if bench::run::run(options).await? {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
