//! The gateway's settings. It needs no secret: verification happens in pay-svc.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use paynotify::runtime::LogFormat;
use secrecy::SecretString;

#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "gateway",
    about = "HTTP front for WeChat Pay notifications (POST /wxpay/notify)"
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "GATEWAY_ADDR", default_value = "127.0.0.1:9010")]
    pub addr: SocketAddr,

    /// pay-svc gRPC address(es); a comma-separated list spreads calls across replicas.
    #[arg(
        long,
        env = "PAY_SVC_URL",
        default_value = "http://127.0.0.1:50051",
        value_delimiter = ','
    )]
    pub pay_svc_urls: Vec<String>,

    /// How long a request's headers may take to arrive; slow-loris clients are cut off (ms).
    #[arg(long, env = "GATEWAY_HEADER_TIMEOUT_MS", default_value_t = 5_000)]
    pub header_timeout_ms: u64,

    /// How long the whole body may take to arrive before the request is dropped (ms).
    #[arg(long, env = "GATEWAY_BODY_TIMEOUT_MS", default_value_t = 2_000)]
    pub body_timeout_ms: u64,

    /// Deadline for pay-svc's verdict (ms). WeChat waits 5 s for the reply, so keep it below.
    #[arg(long, env = "GATEWAY_UPSTREAM_TIMEOUT_MS", default_value_t = 4_000)]
    pub upstream_timeout_ms: u64,

    /// Connections served at once; further ones are closed at once (WeChat retries).
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS", default_value_t = 4_096)]
    pub max_connections: usize,

    /// Bearer token sent to pay-svc on every call (pay-svc's GRPC_AUTH_TOKEN). It guards
    /// the internal hop only; the gateway still holds no merchant key.
    #[arg(long, env = "GRPC_AUTH_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub grpc_auth_token: Option<SecretString>,

    /// Read GRPC_AUTH_TOKEN from this file instead.
    #[arg(long, env = "GRPC_AUTH_TOKEN_FILE")]
    pub grpc_auth_token_file: Option<PathBuf>,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Config {
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }

    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }

    /// The settings for a gateway in front of the given pay-svc, on any free local port.
    pub fn for_pay_svc(pay_svc_url: impl Into<String>) -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pay_svc_urls: vec![pay_svc_url.into()],
            header_timeout_ms: 5_000,
            body_timeout_ms: 2_000,
            upstream_timeout_ms: 4_000,
            max_connections: 4_096,
            grpc_auth_token: None,
            grpc_auth_token_file: None,
            log_format: LogFormat::Text,
        }
    }
}

fn parse_secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}
