//! `cargo run --release -p devstack`: the whole stack on its default ports with the demo
//! merchant and a SQLite database under ./data/, one demo payment, then serving until Ctrl-C.
//! Settings: defaults → `--config` TOML → environment → flags, checked before anything starts.

use std::path::PathBuf;

use clap::Parser;
use secrecy::{ExposeSecret as _, SecretString};

#[derive(Debug, Parser)]
#[command(
    name = "devstack",
    version,
    about = "Run order-svc, pay-svc, gateway and the WeChat Pay simulator locally",
    after_help = "Ports: gateway 9010 (POST /wxpay/notify, GET /metrics), pay-svc 50051 \
                  (metrics 9101), order-svc 50052 (metrics 9102), wxpay-sim 9020."
)]
struct Args {
    /// Skip the demo payment; just serve.
    #[arg(long)]
    no_demo: bool,
    /// The merchant's appid (the simulator plays WeChat for it).
    #[arg(long, env = "WXPAY_APPID", default_value = wxpay_sim::config::DEMO_APPID)]
    appid: String,
    /// The merchant number.
    #[arg(long, env = "WXPAY_MCH_ID", default_value = wxpay_sim::config::DEMO_MCH_ID)]
    mch_id: String,
    /// The APIv2 key (32 letters and digits); the default is the public demo key.
    #[arg(
        long,
        env = "WXPAY_API_KEY",
        hide_env_values = true,
        hide_default_value = true,
        default_value = wxpay_sim::config::DEMO_API_KEY,
        value_parser = parse_secret
    )]
    api_key: SecretString,
    /// Read WXPAY_API_KEY from this file instead.
    #[arg(long, env = "WXPAY_API_KEY_FILE")]
    api_key_file: Option<PathBuf>,
    /// WeChat Pay's API base URL; by default the simulator started here.
    #[arg(long, env = "WXPAY_API_BASE")]
    api_base: Option<String>,
    /// The notify_url sent to WeChat; by default this stack's gateway.
    #[arg(long, env = "WXPAY_NOTIFY_URL")]
    notify_url: Option<String>,
    /// sqlite://, postgres:// or mysql:// URL of the order database.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = order_svc::config::DEFAULT_DATABASE_URL
    )]
    database_url: String,
    /// The token that opens every pay-svc method (the README's grpcurl examples send it to
    /// pay-svc).
    #[arg(
        long,
        env = "GRPC_AUTH_TOKEN",
        hide_env_values = true,
        default_value = devstack::DEMO_GRPC_TOKEN,
        value_parser = parse_secret
    )]
    grpc_auth_token: SecretString,
    /// Read GRPC_AUTH_TOKEN from this file instead.
    #[arg(long, env = "GRPC_AUTH_TOKEN_FILE")]
    grpc_auth_token_file: Option<PathBuf>,
    /// The token the gateway sends to pay-svc, which opens ConfirmPayment only; not
    /// GRPC_AUTH_TOKEN or ORDER_SVC_AUTH_TOKEN.
    #[arg(
        long,
        env = "GATEWAY_AUTH_TOKEN",
        hide_env_values = true,
        default_value = devstack::DEMO_GATEWAY_TOKEN,
        value_parser = parse_secret
    )]
    gateway_auth_token: SecretString,
    /// Read GATEWAY_AUTH_TOKEN from this file instead.
    #[arg(long, env = "GATEWAY_AUTH_TOKEN_FILE")]
    gateway_auth_token_file: Option<PathBuf>,
    /// The token order-svc requires and pay-svc sends; not GRPC_AUTH_TOKEN (the README's
    /// grpcurl examples send it to order-svc).
    #[arg(
        long,
        env = "ORDER_SVC_AUTH_TOKEN",
        hide_env_values = true,
        default_value = devstack::DEMO_ORDER_SVC_TOKEN,
        value_parser = parse_secret
    )]
    order_svc_auth_token: SecretString,
    /// Read ORDER_SVC_AUTH_TOKEN from this file instead.
    #[arg(long, env = "ORDER_SVC_AUTH_TOKEN_FILE")]
    order_svc_auth_token_file: Option<PathBuf>,
    /// The simulator's time scale for WeChat's retry schedule (1.0 = real time).
    #[arg(long, env = "SIM_TIME_SCALE", default_value_t = 1.0)]
    sim_time_scale: f64,
    /// Log line format: `text` for people, `json` for a log pipeline.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    log_format: paynotify::runtime::LogFormat,
    /// A TOML file with any of these settings (keys as the flags or the environment
    /// variables); the environment and flags win over it.
    #[arg(long, env = "CONFIG_FILE")]
    config: Option<PathBuf>,
}

fn parse_secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}

impl Args {
    /// Reads the settings given as files and checks the rest; the error names the setting.
    fn checked(mut self) -> Result<Args, String> {
        if let Some(key) = paynotify::config::secret_from_file(
            "WXPAY_API_KEY_FILE",
            self.api_key_file.as_ref(),
            None,
        )
        .map_err(|e| e.to_string())?
        {
            self.api_key = key;
        }
        if let Some(token) = paynotify::config::secret_from_file(
            "GRPC_AUTH_TOKEN_FILE",
            self.grpc_auth_token_file.as_ref(),
            None,
        )
        .map_err(|e| e.to_string())?
        {
            self.grpc_auth_token = token;
        }
        if let Some(token) = paynotify::config::secret_from_file(
            "GATEWAY_AUTH_TOKEN_FILE",
            self.gateway_auth_token_file.as_ref(),
            None,
        )
        .map_err(|e| e.to_string())?
        {
            self.gateway_auth_token = token;
        }
        if let Some(token) = paynotify::config::secret_from_file(
            "ORDER_SVC_AUTH_TOKEN_FILE",
            self.order_svc_auth_token_file.as_ref(),
            None,
        )
        .map_err(|e| e.to_string())?
        {
            self.order_svc_auth_token = token;
        }
        let key = self.api_key.expose_secret();
        if key.len() != 32 || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!(
                "invalid setting WXPAY_API_KEY: must be 32 ASCII letters and digits (got {} characters)",
                key.chars().count()
            ));
        }
        paynotify::auth::validate_token(&self.grpc_auth_token)
            .map_err(|e| format!("invalid setting {e}"))?;
        paynotify::auth::check_token_shape(&self.order_svc_auth_token)
            .map_err(|e| format!("invalid setting ORDER_SVC_AUTH_TOKEN: {e}"))?;
        if self.order_svc_auth_token.expose_secret() == self.grpc_auth_token.expose_secret() {
            return Err(
                "invalid setting ORDER_SVC_AUTH_TOKEN: must differ from GRPC_AUTH_TOKEN: \
                 the gateway's token would also open order-svc"
                    .into(),
            );
        }
        paynotify::auth::check_token_shape(&self.gateway_auth_token)
            .map_err(|e| format!("invalid setting GATEWAY_AUTH_TOKEN: {e}"))?;
        if self.gateway_auth_token.expose_secret() == self.grpc_auth_token.expose_secret() {
            return Err(
                "invalid setting GATEWAY_AUTH_TOKEN: must differ from GRPC_AUTH_TOKEN: \
                 the gateway's token would also open CreateNativePay and QueryOrder"
                    .into(),
            );
        }
        if self.gateway_auth_token.expose_secret() == self.order_svc_auth_token.expose_secret() {
            return Err(
                "invalid setting GATEWAY_AUTH_TOKEN: must differ from ORDER_SVC_AUTH_TOKEN: \
                 the gateway's token would also open order-svc"
                    .into(),
            );
        }
        if !(self.sim_time_scale.is_finite() && self.sim_time_scale > 0.0) {
            return Err("invalid setting SIM_TIME_SCALE: must be a number > 0".into());
        }
        for (setting, url) in [
            ("WXPAY_API_BASE", &self.api_base),
            ("WXPAY_NOTIFY_URL", &self.notify_url),
        ] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(format!(
                    "invalid setting {setting}: `{url}` must be an http:// or https:// URL"
                ));
            }
        }
        order_svc::config::backend_of(&self.database_url).map_err(|e| e.to_string())?;
        Ok(self)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = match paynotify::config::load::<Args>().checked() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(2);
        }
    };
    paynotify::runtime::init_telemetry(args.log_format);
    let config = devstack::StackConfig {
        database_url: args.database_url,
        appid: args.appid,
        mch_id: args.mch_id,
        api_key: args.api_key,
        api_base: args.api_base,
        notify_url: args.notify_url,
        grpc_auth_token: Some(args.grpc_auth_token),
        gateway_auth_token: Some(args.gateway_auth_token),
        order_svc_auth_token: Some(args.order_svc_auth_token),
        sim_time_scale: args.sim_time_scale,
        ..devstack::StackConfig::demo()
    };
    let stack = devstack::Stack::start(config).await?;
    println!(
        "devstack up: gateway http://{}/wxpay/notify, pay-svc {}, order-svc {}, wxpay-sim http://{}",
        stack.gateway, stack.pay_svc, stack.order_svc, stack.sim
    );
    println!(
        "metrics: http://{}/metrics (gateway), http://{}/metrics (pay-svc), http://{}/metrics (order-svc)",
        stack.gateway, stack.pay_svc_metrics, stack.order_svc_metrics
    );
    if !args.no_demo
        && let Err(error) = devstack::demo::run(&stack).await
    {
        eprintln!("demo failed: {error:#}");
    }
    println!("\nServing until Ctrl-C.");
    paynotify::runtime::shutdown_signal().await;
    stack.shutdown().await?;
    println!("stopped");
    Ok(())
}
