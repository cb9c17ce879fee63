//! The developer CLI, in the same binary as the server, like payment providers' own CLIs:
//! `serve` (the default), control-API commands against a running simulator (`pay`,
//! `trade-state`, `attempts`, `replay`, `stats`), and `notify`, which fires a correctly signed
//! notification at any URL and says whether WeChat would count the reply as SUCCESS.
//!
//! [`load`] reads the command line with the shared layering (defaults → `--config` TOML →
//! environment → flags) for the server; the client commands take flags and environment only.

use std::{ffi::OsString, io::Write, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use paynotify::wxpay::sign::SignType;

use crate::{
    client::SimClient,
    config::{Config, Merchant, SignAlgorithm},
    delivery::post_notification,
    model::{Attempt, PayRequest, ReplayResult, TradeState},
    notification::{Coupon, Notification, UNKNOWN_FIELD, signed_notification},
};

pub const DEFAULT_SIM_URL: &str = "http://127.0.0.1:9020";

/// Shown under `wxpay-sim --help`: the developer CLI at a glance.
const EXAMPLES: &str = "\
Developer CLI (against a running simulator, --sim-url / SIM_URL, default http://127.0.0.1:9020):
  wxpay-sim pay <out_trade_no> [--no-notify] [--transaction-id ID] [--coupon-fee FEN]
                                    the buyer pays; WeChat starts notifying the notify_url
  wxpay-sim trade-state <out_trade_no> USERPAYING|ACCEPT|PAYERROR|REVOKED|NOTPAY
                                    an unpaid order moves as a buyer's terminal or bank moves it
  wxpay-sim attempts <out_trade_no> every notification attempt: time, HTTP status, SUCCESS/FAIL
  wxpay-sim replay <out_trade_no> [--schedule]
                                    deliver the notification again now (or restart the schedule)
  wxpay-sim stats                   the simulator's counters as JSON
  wxpay-sim notify --url URL --out-trade-no NO --total-fee FEN [--sign-type hmac-sha256]
                 [--coupon-fee FEN] [--unknown-field]
                                    POST a signed notification to any URL and judge the reply
                                    (exit 0: WeChat would stop retrying; 1: it would retry)

Settings: flags, environment, or a TOML file (--config FILE or CONFIG_FILE) whose keys are the
flags or the environment variables, e.g. `time_scale = 0.001`; see docs/config/wxpay-sim.toml.
Each command has its own --help.";

#[derive(Debug, Parser)]
#[command(
    name = "wxpay-sim",
    version,
    about = "A local stand-in for WeChat Pay API v2 and its payment notifications",
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Server settings when no subcommand is given (same as `serve`).
    #[command(flatten)]
    pub serve: Config,
    /// A TOML file with any of the server's settings (keys as the flags or the environment
    /// variables); the environment and flags win over it.
    #[arg(long, env = "CONFIG_FILE")]
    pub config: Option<PathBuf>,
}

/// The process's command line. For the server (no subcommand, or `serve`), a TOML file from
/// `--config`/`CONFIG_FILE` goes under the environment and flags; a bad setting prints one
/// line and exits with status 2. The client commands ignore the file.
pub fn load() -> Cli {
    match load_from(std::env::args_os().collect(), |name| {
        std::env::var_os(name).is_some()
    }) {
        Ok(cli) => cli,
        Err(paynotify::config::ConfigError::Clap(error)) => error.exit(),
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(2);
        }
    }
}

/// [`load`] over explicit arguments.
pub fn load_from(
    mut args: Vec<OsString>,
    env_is_set: impl Fn(&str) -> bool,
) -> Result<Cli, paynotify::config::ConfigError> {
    let first = args.get(1).and_then(|a| a.to_str()).map(str::to_owned);
    let command = Cli::command();
    let is_client_command = first.as_deref().is_some_and(|first| {
        first == "help"
            || command
                .get_subcommands()
                .any(|sub| sub.get_name() == first && first != "serve")
    });
    if is_client_command {
        return Ok(Cli::try_parse_from(args)?);
    }
    // `serve` is the default: without it the file's settings land where the server's are.
    if first.as_deref() == Some("serve") {
        args.remove(1);
    }
    paynotify::config::load_from::<Cli, _>(args, env_is_set)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the simulator (the default).
    Serve(Config),
    #[command(flatten)]
    Tool(Tool),
}

/// What the binary is asked to do.
#[derive(Debug)]
pub enum Action {
    Serve(Config),
    Tool(Tool),
}

impl Cli {
    pub fn action(self) -> Action {
        match self.command {
            None => Action::Serve(self.serve),
            Some(Command::Serve(config)) => Action::Serve(config),
            Some(Command::Tool(tool)) => Action::Tool(tool),
        }
    }
}

/// Where the simulator's control API is.
#[derive(Debug, Clone, Args)]
pub struct SimUrl {
    /// Base URL of a running simulator.
    #[arg(long = "sim-url", env = "SIM_URL", default_value = DEFAULT_SIM_URL)]
    pub sim_url: String,
}

#[derive(Debug, Subcommand)]
pub enum Tool {
    /// Pay an unpaid order (NOTPAY, USERPAYING, ACCEPT), as the user would, and start its
    /// notifications.
    Pay {
        out_trade_no: String,
        /// Mark it paid without notifying (to test orderquery-only paths).
        #[arg(long)]
        no_notify: bool,
        /// Use this transaction_id (up to 32 letters and digits) instead of a fresh one, e.g.
        /// to match a notification signed by hand.
        #[arg(long)]
        transaction_id: Option<String>,
        /// Pay this many fen with a coupon (1 to total_fee), the rest in cash: the
        /// notification and orderquery carry cash_fee < total_fee and the coupon_* fields.
        #[arg(long, value_name = "FEN")]
        coupon_fee: Option<i64>,
        #[command(flatten)]
        sim: SimUrl,
    },
    /// Move an unpaid order to USERPAYING, ACCEPT, PAYERROR, REVOKED, or back to NOTPAY.
    TradeState {
        out_trade_no: String,
        trade_state: TradeState,
        #[command(flatten)]
        sim: SimUrl,
    },
    /// List an order's notification attempts.
    Attempts {
        out_trade_no: String,
        #[command(flatten)]
        sim: SimUrl,
    },
    /// Deliver an order's notification again, now (or restart the retry schedule).
    Replay {
        out_trade_no: String,
        /// Restart WeChat's whole retry schedule in the background instead.
        #[arg(long)]
        schedule: bool,
        #[command(flatten)]
        sim: SimUrl,
    },
    /// Print the simulator's counters as JSON.
    Stats {
        #[command(flatten)]
        sim: SimUrl,
    },
    /// POST a correctly signed payment notification to any URL and judge the reply.
    Notify(NotifyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct NotifyArgs {
    /// The notify_url to test.
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub out_trade_no: String,
    /// Amount in fen.
    #[arg(long)]
    pub total_fee: i64,
    /// Default: a fresh 28-digit id.
    #[arg(long)]
    pub transaction_id: Option<String>,
    #[arg(long, value_enum, default_value = "md5")]
    pub sign_type: SignAlgorithm,
    /// The payment's business result.
    #[arg(long, default_value = "SUCCESS", value_parser = ["SUCCESS", "FAIL"])]
    pub result_code: String,
    #[arg(long)]
    pub attach: Option<String>,
    /// Pay this many fen of total_fee with a coupon: cash_fee drops by it and the coupon_*
    /// fields are added.
    #[arg(long, value_name = "FEN")]
    pub coupon_fee: Option<i64>,
    /// Add a signed field no receiver knows (`zz_new_field`), as WeChat may.
    #[arg(long)]
    pub unknown_field: bool,
    /// How long to wait for the reply; WeChat waits 5 s.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    #[command(flatten)]
    pub merchant: Merchant,
}

/// How a tool run ended; `NotAcknowledged` (exit code 1) when `notify`'s reply would not stop
/// WeChat's retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    NotAcknowledged,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Done => ExitCode::SUCCESS,
            Outcome::NotAcknowledged => ExitCode::FAILURE,
        }
    }
}

impl Tool {
    /// Runs the command, printing to `out`.
    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<Outcome> {
        match self {
            Tool::Pay {
                out_trade_no,
                no_notify,
                transaction_id,
                coupon_fee,
                sim,
            } => {
                let request = PayRequest {
                    notify: !no_notify,
                    transaction_id,
                    coupon_fee,
                    ..PayRequest::new(out_trade_no.clone())
                };
                let paid = SimClient::new(sim.sim_url)
                    .pay_with(&request)
                    .await
                    .with_context(|| format!("paying {out_trade_no}"))?;
                writeln!(
                    out,
                    "paid {out_trade_no}: transaction_id={} total_fee={} fen cash_fee={} fen",
                    paid.transaction_id, paid.total_fee, paid.cash_fee
                )?;
                let notification = if no_notify {
                    "not sent (--no-notify)"
                } else {
                    "delivery started"
                };
                writeln!(out, "notification: {notification}")?;
            }
            Tool::TradeState {
                out_trade_no,
                trade_state,
                sim,
            } => {
                let order = SimClient::new(sim.sim_url)
                    .set_trade_state(&out_trade_no, trade_state)
                    .await
                    .with_context(|| format!("setting {out_trade_no} to {trade_state}"))?;
                writeln!(
                    out,
                    "{} trade_state={}",
                    order.out_trade_no, order.trade_state
                )?;
            }
            Tool::Attempts { out_trade_no, sim } => {
                let order = SimClient::new(sim.sim_url)
                    .order(&out_trade_no)
                    .await
                    .with_context(|| format!("reading {out_trade_no}"))?;
                writeln!(
                    out,
                    "{} trade_state={} total_fee={} coupon_fee={} transaction_id={} delivered={}",
                    order.out_trade_no,
                    order.trade_state.as_str(),
                    order.total_fee,
                    order
                        .coupon_fee
                        .map_or_else(|| "-".to_owned(), |fee| fee.to_string()),
                    order.transaction_id.as_deref().unwrap_or("-"),
                    order.delivered
                )?;
                writeln!(out, "notify_url: {}", order.notify_url)?;
                print_attempts(out, &order.attempts)?;
            }
            Tool::Replay {
                out_trade_no,
                schedule,
                sim,
            } => {
                let client = SimClient::new(sim.sim_url);
                let result = if schedule {
                    client.restart_notifications(&out_trade_no).await
                } else {
                    client.replay(&out_trade_no).await
                }
                .with_context(|| format!("replaying {out_trade_no}"))?;
                print_replay(out, &result)?;
            }
            Tool::Stats { sim } => {
                let stats = SimClient::new(sim.sim_url).stats().await?;
                writeln!(out, "{}", serde_json::to_string_pretty(&stats)?)?;
            }
            Tool::Notify(args) => return notify(args, out).await,
        }
        Ok(Outcome::Done)
    }
}

fn print_attempts(out: &mut impl Write, attempts: &[Attempt]) -> std::io::Result<()> {
    if attempts.is_empty() {
        return writeln!(out, "no notification attempts");
    }
    writeln!(
        out,
        "{:>3}  {:<30}  {:>6}  {:<7}  {:>8}  error",
        "#", "at", "status", "result", "elapsed"
    )?;
    for (number, attempt) in attempts.iter().enumerate() {
        let status = attempt
            .http_status
            .map_or_else(|| "-".to_owned(), |s| s.to_string());
        writeln!(
            out,
            "{:>3}  {:<30}  {:>6}  {:<7}  {:>6}ms  {}",
            number + 1,
            attempt.at.to_rfc3339(),
            status,
            if attempt.success { "SUCCESS" } else { "FAIL" },
            attempt.elapsed_ms,
            attempt.error.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}

fn print_replay(out: &mut impl Write, result: &ReplayResult) -> std::io::Result<()> {
    if result.scheduled {
        return writeln!(out, "retry schedule restarted");
    }
    print_attempts(out, &result.attempts)
}

/// `wxpay-sim notify`: what WeChat would send, and what it would make of the reply.
async fn notify(mut args: NotifyArgs, out: &mut impl Write) -> anyhow::Result<Outcome> {
    args.merchant.resolve_key_file()?;
    if let Some(fee) = args.coupon_fee
        && !(1..=args.total_fee).contains(&fee)
    {
        anyhow::bail!(
            "--coupon-fee must be 1 to --total-fee ({}) fen",
            args.total_fee
        );
    }
    let mut notification = Notification::paid(
        &args.merchant.appid,
        &args.merchant.mch_id,
        &args.out_trade_no,
        args.total_fee,
    );
    if let Some(id) = args.transaction_id {
        notification.transaction_id = id;
    }
    if args.result_code == "FAIL" {
        notification.result_code = "FAIL".into();
        notification.err_code = Some("SYSTEMERROR".into());
        notification.err_code_des = Some("系统错误".into());
    }
    notification.attach = args.attach;
    if let Some(fee) = args.coupon_fee {
        notification = notification.with_coupon(Coupon::new(fee));
    }
    if args.unknown_field {
        let (name, value) = UNKNOWN_FIELD;
        notification.extra_fields.insert(name.into(), value.into());
    }
    let sign_type = SignType::from(args.sign_type);
    let xml = signed_notification(&notification, args.merchant.key(), sign_type);

    // Like WeChat: no redirects followed.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the HTTP client")?;
    writeln!(
        out,
        "POST {} ({}-signed; out_trade_no={} total_fee={} cash_fee={} transaction_id={} result_code={})",
        args.url,
        sign_type.as_str(),
        notification.out_trade_no,
        notification.total_fee,
        notification.cash_fee,
        notification.transaction_id,
        notification.result_code
    )?;
    writeln!(out, "body: {xml}")?;
    let reply = post_notification(
        &http,
        &args.url,
        xml,
        Duration::from_millis(args.timeout_ms),
    )
    .await;
    match reply.http_status {
        Some(status) => writeln!(out, "HTTP {status} in {} ms", reply.elapsed.as_millis())?,
        None => writeln!(out, "no HTTP reply after {} ms", reply.elapsed.as_millis())?,
    }
    if let Some(body) = &reply.body {
        writeln!(out, "reply: {body}")?;
    }
    if reply.success {
        writeln!(out, "WeChat would count this as SUCCESS: retries stop.")?;
        Ok(Outcome::Done)
    } else {
        writeln!(
            out,
            "WeChat would NOT count this as SUCCESS ({}): it would send the notification again.",
            reply.error.as_deref().unwrap_or("failed")
        )?;
        Ok(Outcome::NotAcknowledged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Action {
        Cli::try_parse_from(args).unwrap().action()
    }

    #[test]
    fn no_subcommand_serves_with_the_given_flags() {
        match parse(&["wxpay-sim", "--time-scale", "0.01"]) {
            Action::Serve(config) => assert_eq!(config.time_scale, 0.01),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse(&["wxpay-sim", "serve"]), Action::Serve(_)));
    }

    #[test]
    fn tools_parse_their_arguments() {
        match parse(&["wxpay-sim", "pay", "A1", "--no-notify"]) {
            Action::Tool(Tool::Pay {
                out_trade_no,
                no_notify,
                coupon_fee,
                sim,
                ..
            }) => {
                assert_eq!(out_trade_no, "A1");
                assert!(no_notify);
                assert_eq!(coupon_fee, None);
                assert_eq!(sim.sim_url, DEFAULT_SIM_URL);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["wxpay-sim", "pay", "A1", "--coupon-fee", "30"]) {
            Action::Tool(Tool::Pay { coupon_fee, .. }) => assert_eq!(coupon_fee, Some(30)),
            other => panic!("{other:?}"),
        }
        match parse(&["wxpay-sim", "trade-state", "A1", "ACCEPT"]) {
            Action::Tool(Tool::TradeState { trade_state, .. }) => {
                assert_eq!(trade_state, crate::TradeState::Accept);
            }
            other => panic!("{other:?}"),
        }
        match parse(&[
            "wxpay-sim",
            "notify",
            "--url",
            "http://127.0.0.1:1/n",
            "--out-trade-no",
            "A1",
            "--total-fee",
            "100",
            "--sign-type",
            "hmac-sha256",
            "--result-code",
            "FAIL",
        ]) {
            Action::Tool(Tool::Notify(args)) => {
                assert_eq!(args.total_fee, 100);
                assert_eq!(args.sign_type, SignAlgorithm::HmacSha256);
                assert_eq!(args.result_code, "FAIL");
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["wxpay-sim", "notify", "--url", "x"]).is_err());
        assert!(Cli::try_parse_from(["wxpay-sim", "--time-scale", "1", "pay", "A1"]).is_err());
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_config_file_applies_to_the_server_only() {
        let path = std::env::temp_dir().join(format!("wxpay-sim-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "time_scale = 0.01\nSIM_SEED = 7\nsim_unknown_field = true\n",
        )
        .unwrap();
        let file = path.to_str().unwrap();
        for argv in [
            &["wxpay-sim", "--config", file][..],
            &["wxpay-sim", "serve", "--config", file][..],
        ] {
            match load_from(args(argv), |_| false).unwrap().action() {
                Action::Serve(config) => {
                    assert_eq!(config.time_scale, 0.01);
                    assert_eq!(config.seed, Some(7));
                    assert!(config.faults.unknown_field);
                }
                other => panic!("{other:?}"),
            }
        }
        // A flag beats the file.
        match load_from(
            args(&["wxpay-sim", "--config", file, "--time-scale", "2"]),
            |_| false,
        )
        .unwrap()
        .action()
        {
            Action::Serve(config) => assert_eq!(config.time_scale, 2.0),
            other => panic!("{other:?}"),
        }
        // Client commands parse as they are.
        assert!(matches!(
            load_from(
                args(&["wxpay-sim", "pay", "A1", "--transaction-id", "42"]),
                |_| false
            )
            .unwrap()
            .action(),
            Action::Tool(Tool::Pay { .. })
        ));
        std::fs::write(&path, "nonsense = 1\n").unwrap();
        let error = load_from(args(&["wxpay-sim", "--config", file]), |_| false).unwrap_err();
        assert!(error.to_string().contains("`nonsense`"), "{error}");
        std::fs::remove_file(&path).unwrap();
    }
}
