//! The gateway's settings (defaults → `--config` TOML → environment → flags, through
//! `paynotify::config::load`). It holds no merchant secret — verification happens in
//! pay-svc — only the bearer token of the internal hop, which opens ConfirmPayment and nothing
//! else. [`Config::validate`] names the first
//! bad setting, so a wrong value stops the start instead of failing every notification.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use paynotify::{runtime::LogFormat, tls::ClientTls};
use secrecy::SecretString;

#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "gateway",
    version,
    about = "HTTP front for WeChat Pay notifications (POST /wxpay/notify, GET /healthz, GET /metrics)"
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

    /// Bearer token sent to pay-svc on every call: pay-svc's GATEWAY_AUTH_TOKEN, which opens
    /// ConfirmPayment only (pay-svc's GRPC_AUTH_TOKEN, which opens every method, while pay-svc
    /// has no GATEWAY_AUTH_TOKEN). It guards the internal hop only; the gateway still holds
    /// no merchant key.
    #[arg(long, env = "GRPC_AUTH_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub grpc_auth_token: Option<SecretString>,

    /// Read GRPC_AUTH_TOKEN from this file instead.
    #[arg(long, env = "GRPC_AUTH_TOKEN_FILE")]
    pub grpc_auth_token_file: Option<PathBuf>,

    /// CA certificates (PEM) trusted for `https://` PAY_SVC_URL addresses; without it, the
    /// system's trust store. `http://` addresses stay plaintext.
    #[arg(long, env = "GRPC_TLS_CA_FILE")]
    pub grpc_tls_ca_file: Option<PathBuf>,

    /// Send no token: only when pay-svc runs with GRPC_ALLOW_UNAUTHENTICATED too.
    #[arg(
        long,
        env = "GRPC_ALLOW_UNAUTHENTICATED",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub grpc_allow_unauthenticated: bool,

    /// Log line format: `text` for people, `json` for a log pipeline.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// A TOML file with any of these settings (keys as the flags or the environment
    /// variables); the environment and flags win over it.
    #[arg(long, env = "CONFIG_FILE")]
    pub config: Option<PathBuf>,
}

/// A setting the gateway cannot run with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid setting {setting}: {problem}")]
pub struct ConfigError {
    /// The environment variable's name.
    pub setting: &'static str,
    pub problem: String,
}

fn invalid(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        problem: problem.into(),
    }
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

    /// Replaces GRPC_AUTH_TOKEN by GRPC_AUTH_TOKEN_FILE's content, when a file is given (the
    /// file is read once, here: the setting is cleared), and checks that GRPC_TLS_CA_FILE,
    /// when given, holds certificates.
    pub fn resolve_secrets(mut self) -> Result<Config, ConfigError> {
        self.pay_svc_tls()?;
        if let Some(path) = self.grpc_auth_token_file.take() {
            let token = std::fs::read_to_string(&path).map_err(|e| {
                invalid(
                    "GRPC_AUTH_TOKEN_FILE",
                    format!("cannot read `{}`: {e}", path.display()),
                )
            })?;
            self.grpc_auth_token = Some(SecretString::from(
                token.trim_end_matches(['\r', '\n']).to_owned(),
            ));
        }
        Ok(self)
    }

    /// What `https://` pay-svc addresses are checked against.
    pub fn pay_svc_tls(&self) -> Result<ClientTls, ConfigError> {
        ClientTls::load(self.grpc_tls_ca_file.as_deref())
            .map_err(|error| invalid(error.setting, error.problem))
    }

    /// Checks every setting; the first bad one is named in the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let urls: Vec<&str> = self
            .pay_svc_urls
            .iter()
            .map(|url| url.trim())
            .filter(|url| !url.is_empty())
            .collect();
        if urls.is_empty() {
            return Err(invalid(
                "PAY_SVC_URL",
                "at least one pay-svc address is needed",
            ));
        }
        for url in urls {
            let uri: http::Uri = url
                .parse()
                .map_err(|e| invalid("PAY_SVC_URL", format!("`{url}` is not a URL: {e}")))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(invalid(
                    "PAY_SVC_URL",
                    format!("`{url}` must be an http:// or https:// URL with a host"),
                ));
            }
        }
        for (setting, value) in [
            ("GATEWAY_HEADER_TIMEOUT_MS", self.header_timeout_ms),
            ("GATEWAY_BODY_TIMEOUT_MS", self.body_timeout_ms),
            ("GATEWAY_UPSTREAM_TIMEOUT_MS", self.upstream_timeout_ms),
            ("GATEWAY_MAX_CONNECTIONS", self.max_connections as u64),
        ] {
            if value == 0 {
                return Err(invalid(setting, "must be greater than 0"));
            }
        }
        if self.upstream_timeout_ms >= WECHAT_REPLY_DEADLINE_MS {
            return Err(invalid(
                "GATEWAY_UPSTREAM_TIMEOUT_MS",
                format!(
                    "must be below {WECHAT_REPLY_DEADLINE_MS} (WeChat stops waiting for the reply after 5 s)"
                ),
            ));
        }
        match &self.grpc_auth_token {
            Some(token) => paynotify::auth::validate_token(token)
                .map_err(|e| invalid("GRPC_AUTH_TOKEN", e.to_string()))?,
            None if self.grpc_allow_unauthenticated => {}
            None => {
                return Err(invalid(
                    "GRPC_AUTH_TOKEN",
                    "required (or GRPC_AUTH_TOKEN_FILE): pay-svc refuses calls without it; set GRPC_ALLOW_UNAUTHENTICATED=true only if pay-svc runs without authentication",
                ));
            }
        }
        Ok(())
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
            grpc_tls_ca_file: None,
            grpc_allow_unauthenticated: false,
            log_format: LogFormat::Text,
            config: None,
        }
    }
}

/// WeChat waits this long for the reply to a notification (SPEC §1.4).
const WECHAT_REPLY_DEADLINE_MS: u64 = 5_000;

fn parse_secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    const TOKEN: &str = "gateway-test-token-0123456789";

    /// The defaults plus `args`, with a valid token unless `args` set one.
    fn with(args: &[&str]) -> Config {
        let mut all = vec!["gateway"];
        if !args.contains(&"--grpc-auth-token") {
            all.extend(["--grpc-auth-token", TOKEN]);
        }
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    }

    #[test]
    fn the_defaults_are_valid_with_a_token() {
        assert_eq!(with(&[]).validate(), Ok(()));
        let without = Config::try_parse_from(["gateway"]).unwrap();
        assert_eq!(without.validate().unwrap_err().setting, "GRPC_AUTH_TOKEN");
        let open =
            Config::try_parse_from(["gateway", "--grpc-allow-unauthenticated", "true"]).unwrap();
        assert_eq!(open.validate(), Ok(()));
    }

    #[test]
    fn bad_settings_are_named() {
        let cases: &[(&[&str], &str)] = &[
            (&["--pay-svc-urls", "127.0.0.1:50051"], "PAY_SVC_URL"),
            (&["--pay-svc-urls", ""], "PAY_SVC_URL"),
            (
                &["--upstream-timeout-ms", "0"],
                "GATEWAY_UPSTREAM_TIMEOUT_MS",
            ),
            (
                &["--upstream-timeout-ms", "5000"],
                "GATEWAY_UPSTREAM_TIMEOUT_MS",
            ),
            (&["--body-timeout-ms", "0"], "GATEWAY_BODY_TIMEOUT_MS"),
            (&["--max-connections", "0"], "GATEWAY_MAX_CONNECTIONS"),
            (&["--grpc-auth-token", "short"], "GRPC_AUTH_TOKEN"),
        ];
        for (args, setting) in cases {
            let error = with(args).validate().unwrap_err();
            assert_eq!(error.setting, *setting, "{args:?}");
        }
    }

    #[test]
    fn the_token_can_come_from_a_file() {
        let path = std::env::temp_dir().join(format!("gateway-token-{}", std::process::id()));
        std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
        let config =
            Config::try_parse_from(["gateway", "--grpc-auth-token-file", path.to_str().unwrap()])
                .unwrap()
                .resolve_secrets()
                .unwrap();
        assert_eq!(config.validate(), Ok(()));
        std::fs::remove_file(&path).unwrap();
        let missing =
            Config::try_parse_from(["gateway", "--grpc-auth-token-file", "/nonexistent/token"])
                .unwrap()
                .resolve_secrets()
                .unwrap_err();
        assert_eq!(missing.setting, "GRPC_AUTH_TOKEN_FILE");
    }
}
