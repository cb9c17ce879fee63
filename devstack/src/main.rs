//! `cargo run --release -p devstack`: the whole stack on its default ports with the demo
//! merchant and a SQLite database under ./data/, one demo payment, then serving until Ctrl-C.

use clap::Parser;
use secrecy::SecretString;

#[derive(Debug, Parser)]
#[command(
    name = "devstack",
    about = "Run order-svc, pay-svc, gateway and the WeChat Pay simulator locally"
)]
struct Args {
    /// Skip the demo payment; just serve.
    #[arg(long)]
    no_demo: bool,
    #[arg(long, env = "WXPAY_APPID", default_value = wxpay_sim::config::DEMO_APPID)]
    appid: String,
    #[arg(long, env = "WXPAY_MCH_ID", default_value = wxpay_sim::config::DEMO_MCH_ID)]
    mch_id: String,
    #[arg(long, env = "WXPAY_API_KEY", hide_env_values = true, default_value = wxpay_sim::config::DEMO_API_KEY)]
    api_key: String,
    /// WeChat Pay's API base URL; by default the simulator started here.
    #[arg(long, env = "WXPAY_API_BASE")]
    api_base: Option<String>,
    /// The notify_url sent to WeChat; by default this stack's gateway.
    #[arg(long, env = "WXPAY_NOTIFY_URL")]
    notify_url: Option<String>,
    #[arg(long, env = "DATABASE_URL", default_value = order_svc::config::DEFAULT_DATABASE_URL)]
    database_url: String,
    #[arg(long, env = "GRPC_AUTH_TOKEN", hide_env_values = true, default_value = devstack::DEMO_GRPC_TOKEN)]
    grpc_auth_token: String,
    /// The simulator's time scale for WeChat's retry schedule (1.0 = real time).
    #[arg(long, env = "SIM_TIME_SCALE", default_value_t = 1.0)]
    sim_time_scale: f64,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    log_format: paynotify::runtime::LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    paynotify::runtime::init_telemetry(args.log_format);
    let config = devstack::StackConfig {
        database_url: args.database_url,
        appid: args.appid,
        mch_id: args.mch_id,
        api_key: SecretString::from(args.api_key),
        api_base: args.api_base,
        notify_url: args.notify_url,
        grpc_auth_token: Some(SecretString::from(args.grpc_auth_token)),
        sim_time_scale: args.sim_time_scale,
        ..devstack::StackConfig::demo()
    };
    let stack = devstack::Stack::start(config).await?;
    println!(
        "devstack up: gateway http://{}/wxpay/notify, pay-svc {}, order-svc {}, wxpay-sim http://{}",
        stack.gateway, stack.pay_svc, stack.order_svc, stack.sim
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
