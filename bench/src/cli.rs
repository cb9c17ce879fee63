//! The command line: which scenarios to run, how big and how concurrent, and where the stack
//! and its database are.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use paynotify::wxpay::sign::SignType;

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Load tool: the real stack as release processes on 127.0.0.1, signed notifications \
             through the gateway, the MarkPaid, bare-HTTP, GetOrder and bare-gRPC floors in the \
             same run, and a database check afterwards",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: Options,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the scenarios (the default).
    Run(Box<Options>),
    /// The bare HTTP floor server (started by `run` as its own process).
    #[command(hide = true)]
    AckServer {
        #[arg(long)]
        addr: SocketAddr,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// First notifications of fresh paid orders, with both baselines at the same concurrency.
    First,
    /// The same notifications again, for orders already paid (needs `first`).
    Duplicates,
    /// WeChat's orderquery 200 ms slower, at high concurrency.
    Slow,
    /// Cost per notification with a small and with a large order table (fresh stack).
    Growth,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SignAlgorithm {
    #[value(name = "md5")]
    Md5,
    #[value(name = "hmac-sha256")]
    HmacSha256,
}

impl From<SignAlgorithm> for SignType {
    fn from(algorithm: SignAlgorithm) -> SignType {
        match algorithm {
            SignAlgorithm::Md5 => SignType::Md5,
            SignAlgorithm::HmacSha256 => SignType::HmacSha256,
        }
    }
}

#[derive(Clone, Debug, clap::Args)]
pub struct Options {
    /// Scenarios to run, comma-separated.
    #[arg(
        long = "scenario",
        value_enum,
        value_delimiter = ',',
        default_value = "first,duplicates,slow,growth"
    )]
    pub scenarios: Vec<Scenario>,

    /// Orders (first notifications) per measured phase, fresh ones for every round; each floor
    /// (MarkPaid, HTTP, GetOrder, bare gRPC) makes as many requests.
    #[arg(long, default_value_t = 5_000)]
    pub orders: usize,

    /// Requests in flight at once (first, duplicates, growth and every floor).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,

    /// Rounds of first notifications, each measured between two MarkPaid floors; the ratio
    /// and p99 targets take the median over rounds (this VM's speed drifts between phases).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,

    /// Share of the first phase's posts (0.0–0.95) that repeat an earlier notification,
    /// interleaved as WeChat's resends arrive. 0 keeps the phase to first notifications.
    #[arg(long, default_value_t = 0.0)]
    pub dup_ratio: f64,

    /// Requests in flight in the slow-WeChat scenario.
    #[arg(long, default_value_t = 256)]
    pub slow_concurrency: usize,

    /// Delay the simulator adds to every orderquery in the slow scenario (ms).
    #[arg(long, default_value_t = 200)]
    pub slow_latency_ms: u64,

    /// Orders in the table when the growth scenario measures the small point.
    #[arg(long, default_value_t = 10_000)]
    pub growth_small: u64,

    /// Orders in the table when the growth scenario measures the large point.
    #[arg(long, default_value_t = 1_000_000)]
    pub growth_large: u64,

    /// Unmeasured notifications through the whole pipeline before the first phase.
    #[arg(long, default_value_t = 500)]
    pub warmup: usize,

    /// The order database; default: a fresh SQLite file in the work directory. With another
    /// database the growth scenario counts the rows already there.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// order-svc's pool size (DB_MAX_CONNECTIONS); default: order-svc's own default.
    #[arg(long)]
    pub db_max_connections: Option<u32>,

    /// Where the release binaries are; default: next to this executable.
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,

    /// Where logs and the SQLite database go; default: a new directory under the system's
    /// temporary directory, removed afterwards unless --keep.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,

    /// Keep the work directory (service logs, database).
    #[arg(long)]
    pub keep: bool,

    /// RUST_LOG of every service (their logs go to files in the work directory).
    #[arg(long, default_value = "info")]
    pub service_log: String,

    /// Longest any one measured phase may run before it is cut short (s).
    #[arg(long, default_value_t = 300)]
    pub phase_time_limit_secs: u64,

    /// Longest one request may take before it counts as failed (ms).
    #[arg(long, default_value_t = 10_000)]
    pub request_timeout_ms: u64,

    /// How the notifications are signed.
    #[arg(long, value_enum, default_value = "md5")]
    pub sign_type: SignAlgorithm,

    /// Record a `perf` CPU profile of the services during each measured phase, into this
    /// directory (`perf report -i <file> --sort pid,sym`).
    #[arg(long)]
    pub perf_dir: Option<PathBuf>,

    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Exit non-zero when a target is missed (a failed request or database check always does).
    #[arg(long)]
    pub strict: bool,
}

impl Options {
    /// Checks the numbers, naming the bad flag.
    pub fn validate(&self) -> anyhow::Result<()> {
        let positive = [
            ("--orders", self.orders),
            ("--concurrency", self.concurrency),
            ("--slow-concurrency", self.slow_concurrency),
        ];
        for (flag, value) in positive {
            anyhow::ensure!(value > 0, "{flag} must be at least 1");
        }
        anyhow::ensure!(
            (0.0..=0.95).contains(&self.dup_ratio),
            "--dup-ratio must be between 0.0 and 0.95"
        );
        anyhow::ensure!(
            self.growth_small < self.growth_large,
            "--growth-small must be below --growth-large"
        );
        anyhow::ensure!(
            !self.scenarios.contains(&Scenario::Duplicates)
                || self.scenarios.contains(&Scenario::First),
            "--scenario duplicates re-posts the first scenario's notifications: add first"
        );
        Ok(())
    }

    pub fn runs(&self, scenario: Scenario) -> bool {
        self.scenarios.contains(&scenario)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Options {
        let mut all = vec!["bench"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().run
    }

    #[test]
    fn defaults_run_every_scenario_at_the_issue_targets() {
        let options = parse(&[]);
        assert_eq!(options.scenarios.len(), 4);
        assert_eq!(options.concurrency, 64);
        assert_eq!(options.slow_concurrency, 256);
        assert_eq!(options.slow_latency_ms, 200);
        assert_eq!(options.growth_large, 1_000_000);
        options.validate().unwrap();
    }

    #[test]
    fn bad_numbers_are_named() {
        let err = parse(&["--dup-ratio", "1.5"]).validate().unwrap_err();
        assert!(err.to_string().contains("--dup-ratio"));
        let err = parse(&["--scenario", "duplicates"]).validate().unwrap_err();
        assert!(err.to_string().contains("first"));
        let err = parse(&["--concurrency", "0"]).validate().unwrap_err();
        assert!(err.to_string().contains("--concurrency"));
    }

    #[test]
    fn the_ack_server_is_a_subcommand() {
        let cli = Cli::try_parse_from(["bench", "ack-server", "--addr", "127.0.0.1:1"]).unwrap();
        assert!(matches!(cli.command, Some(Command::AckServer { .. })));
    }
}
