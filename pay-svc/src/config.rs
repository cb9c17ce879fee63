//! pay-svc's settings: every one a `--flag` and an environment variable (so a TOML layer can
//! slot in underneath later), checked once at start so a bad value stops the service with the
//! setting's name instead of failing on the first payment.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use paynotify::{
    metrics::AdminAddr,
    runtime::LogFormat,
    tls::{ClientTls, TlsError},
    wxpay::{
        client::{ClientConfig, RetryPolicy},
        sign::SignType,
    },
};
use secrecy::{ExposeSecret, SecretString};
use tonic::transport::ServerTlsConfig;

/// The signature algorithm names as configured (`WXPAY_SIGN_TYPE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SignTypeSetting {
    #[default]
    #[value(name = "MD5")]
    Md5,
    #[value(name = "HMAC-SHA256")]
    HmacSha256,
}

impl From<SignTypeSetting> for SignType {
    fn from(setting: SignTypeSetting) -> SignType {
        match setting {
            SignTypeSetting::Md5 => SignType::Md5,
            SignTypeSetting::HmacSha256 => SignType::HmacSha256,
        }
    }
}

#[derive(Clone, Debug, Parser)]
#[command(
    name = "pay-svc",
    version,
    about = "WeChat Pay gRPC service (pay.v1.PayService)"
)]
pub struct Config {
    /// Where the gRPC server listens.
    #[arg(long, env = "PAY_SVC_ADDR", default_value = "127.0.0.1:50051")]
    pub addr: SocketAddr,

    /// order-svc's gRPC endpoint; a comma-separated list spreads calls over replicas.
    #[arg(long, env = "ORDER_SVC_URL", default_value = "http://127.0.0.1:50052")]
    pub order_svc_url: String,
    #[arg(long, env = "ORDER_SVC_CONNECT_TIMEOUT_MS", default_value_t = 1000)]
    pub order_svc_connect_timeout_ms: u64,
    /// Bound on one order-svc call.
    #[arg(long, env = "ORDER_SVC_TIMEOUT_MS", default_value_t = 2000)]
    pub order_svc_timeout_ms: u64,
    /// Attempts in all for MarkPaid when order-svc is unavailable (it is idempotent).
    #[arg(long, env = "ORDER_SVC_MARK_PAID_ATTEMPTS", default_value_t = 3)]
    pub order_svc_mark_paid_attempts: u32,

    // The merchant has no built-in value: a service started on the public demo merchant by
    // a missing or misspelled variable would reject every genuine notification as badly
    // signed. Empty means "not given"; `validate` refuses to start without them.
    /// The merchant's appid. Required.
    #[arg(
        long,
        env = "WXPAY_APPID",
        default_value = "",
        hide_default_value = true
    )]
    pub wxpay_appid: String,
    /// The merchant number (digits). Required.
    #[arg(
        long,
        env = "WXPAY_MCH_ID",
        default_value = "",
        hide_default_value = true
    )]
    pub wxpay_mch_id: String,
    /// The merchant's APIv2 key (32 characters). Required, here or as WXPAY_API_KEY_FILE.
    #[arg(
        long,
        env = "WXPAY_API_KEY",
        default_value = "",
        hide_default_value = true,
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub wxpay_api_key: SecretString,
    /// Reads the APIv2 key from this file instead (a trailing newline is dropped).
    #[arg(long, env = "WXPAY_API_KEY_FILE")]
    pub wxpay_api_key_file: Option<PathBuf>,
    /// The key being rotated out: notifications and orderquery replies signed with it are
    /// still accepted (nothing is signed with it). Remove it once
    /// paysvc_previous_key_accepted_total stops growing (docs/OPERATIONS.md).
    #[arg(long, env = "WXPAY_API_KEY_PREVIOUS", hide_env_values = true, value_parser = parse_secret)]
    pub wxpay_api_key_previous: Option<SecretString>,
    /// Reads WXPAY_API_KEY_PREVIOUS from this file instead.
    #[arg(long, env = "WXPAY_API_KEY_PREVIOUS_FILE")]
    pub wxpay_api_key_previous_file: Option<PathBuf>,
    #[arg(
        long,
        env = "WXPAY_API_BASE",
        default_value = paynotify::wxpay::client::DEFAULT_BASE_URL
    )]
    pub wxpay_api_base: String,
    /// Tried when the main domain is unreachable, e.g. https://api2.mch.weixin.qq.com.
    #[arg(long, env = "WXPAY_API_BACKUP_BASE")]
    pub wxpay_api_backup_base: Option<String>,
    /// Sent to unifiedorder; WeChat posts the payment notification there.
    #[arg(
        long,
        env = "WXPAY_NOTIFY_URL",
        default_value = "http://127.0.0.1:9010/wxpay/notify"
    )]
    pub wxpay_notify_url: String,
    #[arg(long, env = "WXPAY_SIGN_TYPE", value_enum, default_value_t = SignTypeSetting::Md5)]
    pub wxpay_sign_type: SignTypeSetting,
    #[arg(long, env = "WXPAY_CONNECT_TIMEOUT_MS", default_value_t = 1000)]
    pub wxpay_connect_timeout_ms: u64,
    /// Bound on one HTTP exchange with WeChat.
    #[arg(long, env = "WXPAY_TIMEOUT_MS", default_value_t = 1500)]
    pub wxpay_timeout_ms: u64,
    /// Attempts in all for orderquery/closeorder.
    #[arg(long, env = "WXPAY_MAX_ATTEMPTS", default_value_t = 3)]
    pub wxpay_max_attempts: u32,
    /// Delay before the first retry; doubles each retry (with jitter).
    #[arg(long, env = "WXPAY_RETRY_BACKOFF_MS", default_value_t = 100)]
    pub wxpay_retry_backoff_ms: u64,

    /// Seconds between reconciliation runs; 0 disables reconciliation.
    #[arg(long, env = "RECONCILE_INTERVAL_SECS", default_value_t = 60)]
    pub reconcile_interval_secs: u64,
    /// Only orders unpaid for at least this long are queried (their notification is late).
    #[arg(long, env = "RECONCILE_MIN_AGE_SECS", default_value_t = 60)]
    pub reconcile_min_age_secs: u64,
    /// Orders older than this are no longer queried; 0 = no limit.
    #[arg(long, env = "RECONCILE_MAX_AGE_SECS", default_value_t = 86_400)]
    pub reconcile_max_age_secs: u64,
    /// At most this many orders per run (order-svc caps it at 1000).
    #[arg(long, env = "RECONCILE_BATCH", default_value_t = 100)]
    pub reconcile_batch: u32,
    /// orderquery calls per second made by reconciliation, at most.
    #[arg(long, env = "RECONCILE_QUERIES_PER_SEC", default_value_t = 5.0)]
    pub reconcile_queries_per_sec: f64,
    /// Close orders still unpaid at WeChat at RECONCILE_CLOSE_AFTER_SECS: closeorder, then
    /// order-svc, so none can be paid unnoticed once reconciliation stops looking at it. Off
    /// for merchants who close their orders themselves.
    #[arg(
        long,
        env = "RECONCILE_CLOSE_UNPAID",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub reconcile_close_unpaid: bool,
    /// Age at which an order still unpaid at WeChat is closed; at most RECONCILE_MAX_AGE_SECS
    /// minus two RECONCILE_INTERVAL_SECS, so a failed close is tried again. Default:
    /// RECONCILE_MAX_AGE_SECS minus the larger of a 24th of it and two intervals (82800 with
    /// the defaults, and without a max age).
    #[arg(long, env = "RECONCILE_CLOSE_AFTER_SECS")]
    pub reconcile_close_after_secs: Option<u64>,

    /// Orders remembered as paid (and by which transaction), so duplicate notifications are
    /// answered without calling order-svc; about 150 bytes each. 0 turns it off.
    #[arg(long, env = "PAID_CACHE_ENTRIES", default_value_t = 50_000)]
    pub paid_cache_entries: usize,

    /// Bearer token that opens every PayService method: the merchant's systems and operators
    /// send it (and the gateway, while GATEWAY_AUTH_TOKEN is unset). Required unless
    /// GRPC_ALLOW_UNAUTHENTICATED.
    #[arg(long, env = "GRPC_AUTH_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub grpc_auth_token: Option<SecretString>,
    /// Read GRPC_AUTH_TOKEN from this file instead.
    #[arg(long, env = "GRPC_AUTH_TOKEN_FILE")]
    pub grpc_auth_token_file: Option<PathBuf>,
    /// Bearer token of the gateway (the gateway's GRPC_AUTH_TOKEN): it opens ConfirmPayment
    /// only, so whoever takes the internet-facing gateway over cannot call CreateNativePay or
    /// QueryOrder. Different from GRPC_AUTH_TOKEN and ORDER_SVC_AUTH_TOKEN. Unset, the gateway
    /// needs GRPC_AUTH_TOKEN, which opens every method (a WARN at start says so).
    #[arg(long, env = "GATEWAY_AUTH_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub gateway_auth_token: Option<SecretString>,
    /// Read GATEWAY_AUTH_TOKEN from this file instead.
    #[arg(long, env = "GATEWAY_AUTH_TOKEN_FILE")]
    pub gateway_auth_token_file: Option<PathBuf>,
    /// Bearer token pay-svc sends to order-svc (order-svc's GRPC_AUTH_TOKEN). Required when
    /// GRPC_AUTH_TOKEN is set, and different from it: the gateway may hold GRPC_AUTH_TOKEN and
    /// must not be able to call order-svc (MarkPaid) itself.
    #[arg(long, env = "ORDER_SVC_AUTH_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub order_svc_auth_token: Option<SecretString>,
    /// Read ORDER_SVC_AUTH_TOKEN from this file instead.
    #[arg(long, env = "ORDER_SVC_AUTH_TOKEN_FILE")]
    pub order_svc_auth_token_file: Option<PathBuf>,
    /// Run without GRPC_AUTH_TOKEN: every caller is trusted with every method (so
    /// GATEWAY_AUTH_TOKEN is refused), and order-svc gets ORDER_SVC_AUTH_TOKEN only if it is
    /// set. Only on a trusted network.
    #[arg(
        long,
        env = "GRPC_ALLOW_UNAUTHENTICATED",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub grpc_allow_unauthenticated: bool,

    /// Serve gRPC over TLS with this certificate chain (PEM, leaf first); needs
    /// GRPC_TLS_KEY_FILE. Neither set: plaintext. Callers still need the token.
    #[arg(long, env = "GRPC_TLS_CERT_FILE")]
    pub grpc_tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of GRPC_TLS_CERT_FILE's certificate.
    #[arg(long, env = "GRPC_TLS_KEY_FILE")]
    pub grpc_tls_key_file: Option<PathBuf>,
    /// CA certificates (PEM) trusted for `https://` ORDER_SVC_URL addresses; without it, the
    /// system's trust store. `http://` addresses stay plaintext.
    #[arg(long, env = "GRPC_TLS_CA_FILE")]
    pub grpc_tls_ca_file: Option<PathBuf>,

    /// How long in-flight calls may run on after the shutdown signal.
    #[arg(long, env = "SHUTDOWN_GRACE_MS", default_value_t = 5000)]
    pub shutdown_grace_ms: u64,

    /// Admin HTTP address serving GET /metrics (Prometheus) and GET /healthz; `off` (or
    /// empty) disables it.
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9101")]
    pub metrics_addr: AdminAddr,

    /// Log line format: `text` for people, `json` for a log pipeline.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// A TOML file with any of these settings (keys as the flags or the environment
    /// variables); the environment and flags win over it.
    #[arg(long, env = "CONFIG_FILE")]
    pub config: Option<PathBuf>,
}

fn parse_secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}

/// A setting with a value the service cannot run with.
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

impl Default for Config {
    /// The built-in defaults, ignoring the environment. There is no built-in merchant:
    /// `wxpay_appid`, `wxpay_mch_id` and `wxpay_api_key` are empty until set.
    fn default() -> Self {
        Config::from_args_without_env(["pay-svc"])
            .unwrap_or_else(|e| unreachable!("the built-in defaults parse: {e}"))
    }
}

impl Config {
    /// Parses command-line style arguments only, with the environment ignored (for tests and
    /// embedding, where the process's variables must not leak in).
    pub fn from_args_without_env<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let command = Config::command().mut_args(|arg| arg.env(None));
        Config::from_arg_matches(&command.try_get_matches_from(args)?)
    }

    /// Replaces settings given as files (`WXPAY_API_KEY_FILE`, `GRPC_AUTH_TOKEN_FILE`,
    /// `GATEWAY_AUTH_TOKEN_FILE`, `ORDER_SVC_AUTH_TOKEN_FILE`) by the files' contents, checks
    /// that a token is set unless authentication is turned off, and that the `GRPC_TLS_*`
    /// files, when given, load.
    pub fn resolve_secrets(mut self) -> anyhow::Result<Config> {
        self.server_tls()?;
        self.order_svc_tls()?;
        if let Some(key) = paynotify::config::secret_from_file(
            "WXPAY_API_KEY_FILE",
            self.wxpay_api_key_file.as_ref(),
            None,
        )? {
            self.wxpay_api_key = key;
        }
        self.wxpay_api_key_previous = paynotify::config::secret_from_file(
            "WXPAY_API_KEY_PREVIOUS_FILE",
            self.wxpay_api_key_previous_file.as_ref(),
            self.wxpay_api_key_previous.take(),
        )?;
        self.grpc_auth_token = paynotify::auth::resolve_token(
            self.grpc_auth_token.as_ref(),
            self.grpc_auth_token_file.as_ref(),
            self.grpc_allow_unauthenticated,
        )?;
        self.gateway_auth_token = paynotify::config::secret_from_file(
            "GATEWAY_AUTH_TOKEN_FILE",
            self.gateway_auth_token_file.as_ref(),
            self.gateway_auth_token.take(),
        )?;
        self.order_svc_auth_token = paynotify::config::secret_from_file(
            "ORDER_SVC_AUTH_TOKEN_FILE",
            self.order_svc_auth_token_file.as_ref(),
            self.order_svc_auth_token.take(),
        )?;
        Ok(self)
    }

    /// The identity PayService is served with over TLS; `None`: plaintext.
    pub fn server_tls(&self) -> Result<Option<ServerTlsConfig>, TlsError> {
        paynotify::tls::server_config(
            self.grpc_tls_cert_file.as_deref(),
            self.grpc_tls_key_file.as_deref(),
        )
    }

    /// What `https://` order-svc addresses are checked against.
    pub fn order_svc_tls(&self) -> Result<ClientTls, TlsError> {
        ClientTls::load(self.grpc_tls_ca_file.as_deref())
    }

    /// Checks every setting; the first bad one is named in the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for url in self.order_svc_url.split(',') {
            http_url("ORDER_SVC_URL", url.trim())?;
        }
        positive(
            "ORDER_SVC_CONNECT_TIMEOUT_MS",
            self.order_svc_connect_timeout_ms,
        )?;
        positive("ORDER_SVC_TIMEOUT_MS", self.order_svc_timeout_ms)?;
        positive(
            "ORDER_SVC_MARK_PAID_ATTEMPTS",
            u64::from(self.order_svc_mark_paid_attempts),
        )?;

        self.merchant_given()?;
        if self.wxpay_appid.len() > 32 {
            return Err(invalid("WXPAY_APPID", "must be 1 to 32 characters"));
        }
        if self.wxpay_mch_id.len() > 32 || !self.wxpay_mch_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("WXPAY_MCH_ID", "must be 1 to 32 digits"));
        }
        api_key("WXPAY_API_KEY", &self.wxpay_api_key)?;
        if let Some(previous) = &self.wxpay_api_key_previous {
            api_key("WXPAY_API_KEY_PREVIOUS", previous)?;
            if previous.expose_secret() == self.wxpay_api_key.expose_secret() {
                return Err(invalid(
                    "WXPAY_API_KEY_PREVIOUS",
                    "is the same as WXPAY_API_KEY; set it to the key being replaced, or unset it",
                ));
            }
        }
        http_url("WXPAY_API_BASE", &self.wxpay_api_base)?;
        if let Some(backup) = &self.wxpay_api_backup_base {
            http_url("WXPAY_API_BACKUP_BASE", backup)?;
        }
        let notify = http_url("WXPAY_NOTIFY_URL", &self.wxpay_notify_url)?;
        if notify.query().is_some() {
            return Err(invalid(
                "WXPAY_NOTIFY_URL",
                "must not carry a query string (WeChat drops it)",
            ));
        }
        if self.wxpay_notify_url.len() > 256 {
            return Err(invalid(
                "WXPAY_NOTIFY_URL",
                "must be at most 256 characters",
            ));
        }
        positive("WXPAY_CONNECT_TIMEOUT_MS", self.wxpay_connect_timeout_ms)?;
        positive("WXPAY_TIMEOUT_MS", self.wxpay_timeout_ms)?;
        positive("WXPAY_MAX_ATTEMPTS", u64::from(self.wxpay_max_attempts))?;
        match &self.grpc_auth_token {
            Some(token) => paynotify::auth::validate_token(token)
                .map_err(|e| invalid("GRPC_AUTH_TOKEN", e.to_string()))?,
            None if self.grpc_allow_unauthenticated => {}
            None => {
                return Err(invalid(
                    "GRPC_AUTH_TOKEN",
                    "required (or GRPC_AUTH_TOKEN_FILE); set GRPC_ALLOW_UNAUTHENTICATED=true to run without authentication on a trusted network",
                ));
            }
        }
        // The gateway faces the internet and holds GRPC_AUTH_TOKEN: were that also order-svc's
        // token, whoever took the gateway over could call MarkPaid directly, past the
        // signature check and orderquery.
        match (&self.order_svc_auth_token, &self.grpc_auth_token) {
            (Some(token), callers) => {
                paynotify::auth::check_token_shape(token)
                    .map_err(|e| invalid("ORDER_SVC_AUTH_TOKEN", e.to_string()))?;
                if callers
                    .as_ref()
                    .is_some_and(|callers| callers.expose_secret() == token.expose_secret())
                {
                    return Err(invalid(
                        "ORDER_SVC_AUTH_TOKEN",
                        "must differ from GRPC_AUTH_TOKEN: the gateway's token would also open order-svc",
                    ));
                }
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "ORDER_SVC_AUTH_TOKEN",
                    "required with GRPC_AUTH_TOKEN (or ORDER_SVC_AUTH_TOKEN_FILE): the token pay-svc sends to order-svc, different from GRPC_AUTH_TOKEN so that the gateway's token does not open order-svc (an order-svc that runs without authentication ignores it)",
                ));
            }
            // pay-svc itself runs open (GRPC_ALLOW_UNAUTHENTICATED): its calls may too.
            (None, None) => {}
        }
        // The gateway's own token opens ConfirmPayment only: were it also GRPC_AUTH_TOKEN or
        // order-svc's token, whoever took the gateway over could create payments and query
        // orders, or call MarkPaid.
        if let Some(token) = &self.gateway_auth_token {
            paynotify::auth::check_token_shape(token)
                .map_err(|e| invalid("GATEWAY_AUTH_TOKEN", e.to_string()))?;
            let Some(callers) = &self.grpc_auth_token else {
                return Err(invalid(
                    "GATEWAY_AUTH_TOKEN",
                    "only with GRPC_AUTH_TOKEN: pay-svc runs without authentication (GRPC_ALLOW_UNAUTHENTICATED), so every caller may call every method and the gateway's token would restrict nothing; set GRPC_AUTH_TOKEN too, or unset GATEWAY_AUTH_TOKEN",
                ));
            };
            if callers.expose_secret() == token.expose_secret() {
                return Err(invalid(
                    "GATEWAY_AUTH_TOKEN",
                    "must differ from GRPC_AUTH_TOKEN: the gateway's token would also open CreateNativePay and QueryOrder",
                ));
            }
            if self
                .order_svc_auth_token
                .as_ref()
                .is_some_and(|order_svc| order_svc.expose_secret() == token.expose_secret())
            {
                return Err(invalid(
                    "GATEWAY_AUTH_TOKEN",
                    "must differ from ORDER_SVC_AUTH_TOKEN: the gateway's token would also open order-svc",
                ));
            }
        }

        if self.reconcile_interval_secs > 0 {
            positive("RECONCILE_BATCH", u64::from(self.reconcile_batch))?;
            if !(self.reconcile_queries_per_sec.is_finite() && self.reconcile_queries_per_sec > 0.0)
            {
                return Err(invalid("RECONCILE_QUERIES_PER_SEC", "must be a number > 0"));
            }
            if self.reconcile_max_age_secs != 0
                && self.reconcile_max_age_secs <= self.reconcile_min_age_secs
            {
                return Err(invalid(
                    "RECONCILE_MAX_AGE_SECS",
                    "must be 0 or greater than RECONCILE_MIN_AGE_SECS",
                ));
            }
            // Two intervals before the window ends: the first visit past the closing age
            // comes within one interval of it, and a failed close gets another.
            let latest = self
                .reconcile_max_age_secs
                .checked_sub(self.reconcile_interval_secs.saturating_mul(2));
            let close_after = self.reconcile_close_after_secs();
            if self.reconcile_close_unpaid
                && self.reconcile_max_age_secs != 0
                && latest.is_none_or(|latest| close_after > latest)
            {
                let default = if self.reconcile_close_after_secs.is_none() {
                    ", the default for this window"
                } else {
                    ""
                };
                return Err(invalid(
                    "RECONCILE_CLOSE_AFTER_SECS",
                    format!(
                        "must be at most RECONCILE_MAX_AGE_SECS minus twice RECONCILE_INTERVAL_SECS ({}), so that an order is closed before reconciliation stops looking at it; it is {close_after}{default} (or set RECONCILE_CLOSE_UNPAID=false)",
                        latest.map_or_else(|| "none here".to_owned(), |l| l.to_string())
                    ),
                ));
            }
            // At least one visit that only queries before the one that may close: an order is
            // not closed the first time reconciliation looks at it, while the buyer may still
            // be scanning its code.
            let earliest = self
                .reconcile_min_age_secs
                .saturating_add(self.reconcile_interval_secs);
            if self.reconcile_close_unpaid && close_after < earliest {
                return Err(invalid(
                    "RECONCILE_CLOSE_AFTER_SECS",
                    format!(
                        "must be at least RECONCILE_MIN_AGE_SECS plus RECONCILE_INTERVAL_SECS ({earliest}), so that an order is not closed on the first visit; it is {close_after} (or set RECONCILE_CLOSE_UNPAID=false)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// When reconciliation closes orders still unpaid at WeChat; `None` when it does not.
    pub fn reconcile_close_after(&self) -> Option<Duration> {
        self.reconcile_close_unpaid
            .then(|| Duration::from_secs(self.reconcile_close_after_secs()))
    }

    /// RECONCILE_CLOSE_AFTER_SECS, or its default: an hour before the end of the default
    /// day-long window, a 24th of the window before its end in general, and never less than
    /// two intervals before it.
    fn reconcile_close_after_secs(&self) -> u64 {
        const WITHOUT_MAX_AGE: u64 = 82_800;
        match (self.reconcile_close_after_secs, self.reconcile_max_age_secs) {
            (Some(secs), _) => secs,
            (None, 0) => WITHOUT_MAX_AGE,
            (None, max_age) => max_age
                .saturating_sub((max_age / 24).max(self.reconcile_interval_secs.saturating_mul(2))),
        }
    }

    /// The merchant settings are all given. Every missing one is named, in one line, so a
    /// new deployment learns all it lacks from one refused start.
    fn merchant_given(&self) -> Result<(), ConfigError> {
        // (setting, given, what is expected, how it is listed among the others missing)
        let merchant = [
            (
                "WXPAY_APPID",
                !self.wxpay_appid.is_empty(),
                "the merchant's appid",
                "WXPAY_APPID",
            ),
            (
                "WXPAY_MCH_ID",
                !self.wxpay_mch_id.is_empty(),
                "the merchant number",
                "WXPAY_MCH_ID",
            ),
            (
                "WXPAY_API_KEY",
                !self.wxpay_api_key.expose_secret().is_empty(),
                "the merchant's 32-character APIv2 key; or WXPAY_API_KEY_FILE, a file holding it",
                "WXPAY_API_KEY (or WXPAY_API_KEY_FILE)",
            ),
        ];
        let mut missing = merchant.iter().filter(|(_, given, ..)| !given);
        let Some((setting, _, expected, _)) = missing.next() else {
            return Ok(());
        };
        let mut problem = format!("required ({expected}); there is no built-in merchant");
        let others: Vec<&str> = missing.map(|(.., listed)| *listed).collect();
        if !others.is_empty() {
            problem.push_str("; also missing: ");
            problem.push_str(&others.join(", "));
        }
        Err(invalid(setting, problem))
    }

    /// The WeChat client's settings.
    pub fn wechat_client_config(&self) -> ClientConfig {
        ClientConfig {
            base_url: self.wxpay_api_base.clone(),
            backup_base_url: self.wxpay_api_backup_base.clone(),
            sign_type: self.wxpay_sign_type.into(),
            connect_timeout: Duration::from_millis(self.wxpay_connect_timeout_ms),
            request_timeout: Duration::from_millis(self.wxpay_timeout_ms),
            retry: RetryPolicy {
                max_attempts: self.wxpay_max_attempts,
                base_backoff: Duration::from_millis(self.wxpay_retry_backoff_ms),
                max_backoff: Duration::from_millis(self.wxpay_retry_backoff_ms.saturating_mul(8)),
            },
            ..ClientConfig::new(
                self.wxpay_appid.clone(),
                self.wxpay_mch_id.clone(),
                self.wxpay_api_key.clone(),
            )
        }
    }

    /// The retry schedule for idempotent order-svc calls (MarkPaid).
    pub fn order_svc_retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.order_svc_mark_paid_attempts,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(800),
        }
    }
}

/// An APIv2 key's shape. The length is safe to say; the key is not.
fn api_key(setting: &'static str, key: &SecretString) -> Result<(), ConfigError> {
    let key = key.expose_secret();
    if key.len() != 32 || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid(
            setting,
            format!(
                "must be 32 ASCII letters and digits (got {} characters)",
                key.chars().count()
            ),
        ));
    }
    Ok(())
}

fn positive(setting: &'static str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(invalid(setting, "must be greater than 0"));
    }
    Ok(())
}

fn http_url(setting: &'static str, value: &str) -> Result<http::Uri, ConfigError> {
    let uri: http::Uri = value
        .parse()
        .map_err(|e| invalid(setting, format!("`{value}` is not a URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(invalid(
            setting,
            format!("`{value}` must be an http:// or https:// URL with a host"),
        ));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    use wxpay_sim::{DEMO_API_KEY, DEMO_APPID, DEMO_MCH_ID};

    const TOKEN: &str = "pay-svc-test-token-0123456789";
    const ORDER_TOKEN: &str = "pay-svc-order-svc-token-0123456789";
    const GATEWAY_TOKEN: &str = "pay-svc-gateway-token-0123456789";

    /// The flags naming the demo merchant.
    const DEMO_MERCHANT: [&str; 6] = [
        "--wxpay-appid",
        DEMO_APPID,
        "--wxpay-mch-id",
        DEMO_MCH_ID,
        "--wxpay-api-key",
        DEMO_API_KEY,
    ];

    /// The defaults plus `args`, with the demo merchant and valid tokens unless `args` set
    /// them.
    fn with(args: &[&str]) -> Config {
        let mut all = vec!["pay-svc"];
        for pair in DEMO_MERCHANT.chunks(2) {
            if !args.contains(&pair[0]) {
                all.extend_from_slice(pair);
            }
        }
        // A default token only where the test gives neither the token nor its file, so that
        // a test of the file reads the file alone.
        let given = |flag: &str| {
            args.iter()
                .any(|arg| *arg == flag || arg.strip_suffix("-file") == Some(flag))
        };
        for (flag, token) in [
            ("--grpc-auth-token", TOKEN),
            ("--order-svc-auth-token", ORDER_TOKEN),
            ("--gateway-auth-token", GATEWAY_TOKEN),
        ] {
            if !given(flag) {
                all.extend([flag, token]);
            }
        }
        all.extend_from_slice(args);
        Config::from_args_without_env(all).unwrap()
    }

    #[test]
    fn the_defaults_are_valid_with_a_merchant_and_a_token_and_hide_secrets() {
        let config = with(&[]);
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.addr.to_string(), "127.0.0.1:50051");
        let debug = format!("{config:?}");
        assert!(!debug.contains(DEMO_API_KEY));
        assert!(!debug.contains(TOKEN));
        assert!(!debug.contains(ORDER_TOKEN));
        assert!(!debug.contains(GATEWAY_TOKEN));
    }

    #[test]
    fn there_is_no_built_in_merchant() {
        let config = Config::default();
        assert_eq!(config.wxpay_appid, "");
        assert_eq!(config.wxpay_mch_id, "");
        assert_eq!(config.wxpay_api_key.expose_secret(), "");

        // Nothing given: the first is the setting, the rest are listed, on one line.
        let err = Config::from_args_without_env(["pay-svc", "--grpc-auth-token", TOKEN])
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(err.setting, "WXPAY_APPID");
        assert_eq!(
            err.to_string(),
            "invalid setting WXPAY_APPID: required (the merchant's appid); there is no \
             built-in merchant; also missing: WXPAY_MCH_ID, WXPAY_API_KEY (or WXPAY_API_KEY_FILE)"
        );

        // Each one missing alone is named alone.
        for (flag, setting) in [
            ("--wxpay-appid", "WXPAY_APPID"),
            ("--wxpay-mch-id", "WXPAY_MCH_ID"),
            ("--wxpay-api-key", "WXPAY_API_KEY"),
        ] {
            let mut args = vec!["pay-svc", "--grpc-auth-token", TOKEN];
            for pair in DEMO_MERCHANT.chunks(2).filter(|pair| pair[0] != flag) {
                args.extend_from_slice(pair);
            }
            let err = Config::from_args_without_env(args)
                .unwrap()
                .validate()
                .unwrap_err();
            assert_eq!(err.setting, setting, "{flag}");
            assert!(err.problem.starts_with("required ("), "{err}");
            assert!(!err.problem.contains("also missing"), "{err}");
            assert!(!err.to_string().contains('\n'), "{err}");
        }
        let err = with(&["--wxpay-api-key", ""]).validate().unwrap_err();
        assert!(
            err.problem.contains("WXPAY_API_KEY_FILE"),
            "the file is offered: {err}"
        );
    }

    #[test]
    fn authentication_is_on_unless_turned_off() {
        let merchant = || {
            let mut args = vec!["pay-svc"];
            args.extend(DEMO_MERCHANT);
            args
        };
        let closed = Config::from_args_without_env(merchant()).unwrap();
        let err = closed.validate().unwrap_err();
        assert_eq!(err.setting, "GRPC_AUTH_TOKEN");
        assert!(closed.resolve_secrets().is_err());
        let mut args = merchant();
        args.extend(["--grpc-allow-unauthenticated", "true"]);
        let open = Config::from_args_without_env(args).unwrap();
        assert_eq!(open.validate(), Ok(()));
        assert!(open.resolve_secrets().unwrap().grpc_auth_token.is_none());
    }

    #[test]
    fn order_svc_gets_its_own_token_not_the_callers() {
        let err = Config::from_args_without_env(
            ["pay-svc", "--grpc-auth-token", TOKEN]
                .into_iter()
                .chain(DEMO_MERCHANT),
        )
        .unwrap()
        .validate()
        .unwrap_err();
        assert_eq!(err.setting, "ORDER_SVC_AUTH_TOKEN");
        assert!(err.problem.starts_with("required"), "{err}");

        let err = with(&["--order-svc-auth-token", TOKEN])
            .validate()
            .unwrap_err();
        assert_eq!(err.setting, "ORDER_SVC_AUTH_TOKEN");
        assert_eq!(
            err.problem,
            "must differ from GRPC_AUTH_TOKEN: the gateway's token would also open order-svc"
        );
        assert!(!err.to_string().contains(TOKEN), "{err}");

        // The opt-out changes nothing while pay-svc requires a token from its callers.
        let err = with(&[
            "--grpc-allow-unauthenticated",
            "true",
            "--order-svc-auth-token",
            TOKEN,
        ])
        .validate()
        .unwrap_err();
        assert_eq!(err.setting, "ORDER_SVC_AUTH_TOKEN");

        // Running open, pay-svc sends order-svc a token only when given one.
        let open = |extra: &[&'static str]| {
            let mut args = vec!["pay-svc", "--grpc-allow-unauthenticated", "true"];
            args.extend(DEMO_MERCHANT);
            args.extend_from_slice(extra);
            Config::from_args_without_env(args)
                .unwrap()
                .resolve_secrets()
                .unwrap()
        };
        let without = open(&[]);
        assert_eq!(without.validate(), Ok(()));
        assert!(without.order_svc_auth_token.is_none());
        let with_token = open(&["--order-svc-auth-token", ORDER_TOKEN]);
        assert_eq!(with_token.validate(), Ok(()));
        assert_eq!(
            with_token.order_svc_auth_token.unwrap().expose_secret(),
            ORDER_TOKEN
        );
    }

    #[test]
    fn the_order_svc_token_can_come_from_a_file() {
        let path = std::env::temp_dir().join(format!(
            "pay-svc-order-token-{}",
            paynotify::wxpay::time::nonce_str()
        ));
        std::fs::write(&path, "order-svc-token-from-a-file-0123\n").unwrap();
        let file = path.to_str().unwrap();
        let config = with(&["--order-svc-auth-token-file", file])
            .resolve_secrets()
            .unwrap();
        assert_eq!(
            config
                .order_svc_auth_token
                .as_ref()
                .unwrap()
                .expose_secret(),
            "order-svc-token-from-a-file-0123"
        );
        assert_eq!(config.validate(), Ok(()));

        // The file is checked like the setting: the same token as the callers' is refused.
        std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
        let err = with(&["--order-svc-auth-token-file", file])
            .resolve_secrets()
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(err.setting, "ORDER_SVC_AUTH_TOKEN");
        std::fs::remove_file(&path).unwrap();

        let err = with(&["--order-svc-auth-token-file", file])
            .resolve_secrets()
            .unwrap_err();
        assert!(
            err.to_string().starts_with("ORDER_SVC_AUTH_TOKEN_FILE: "),
            "{err}"
        );
    }

    #[test]
    fn the_gateway_gets_a_token_of_its_own() {
        assert_eq!(with(&[]).validate(), Ok(()));
        // Optional: a deployment whose gateway still sends GRPC_AUTH_TOKEN starts (and is
        // warned about at start).
        let mut without = with(&[]);
        without.gateway_auth_token = None;
        assert_eq!(without.validate(), Ok(()));

        let err = with(&["--gateway-auth-token", TOKEN])
            .validate()
            .unwrap_err();
        assert_eq!(err.setting, "GATEWAY_AUTH_TOKEN");
        assert_eq!(
            err.problem,
            "must differ from GRPC_AUTH_TOKEN: the gateway's token would also open \
             CreateNativePay and QueryOrder"
        );
        assert!(!err.to_string().contains(TOKEN), "{err}");

        let err = with(&["--gateway-auth-token", ORDER_TOKEN])
            .validate()
            .unwrap_err();
        assert_eq!(err.setting, "GATEWAY_AUTH_TOKEN");
        assert_eq!(
            err.problem,
            "must differ from ORDER_SVC_AUTH_TOKEN: the gateway's token would also open order-svc"
        );
        assert!(!err.to_string().contains(ORDER_TOKEN), "{err}");

        // Running open, there is nothing for it to narrow: refused rather than ignored.
        let mut args = vec![
            "pay-svc",
            "--grpc-allow-unauthenticated",
            "true",
            "--gateway-auth-token",
            GATEWAY_TOKEN,
        ];
        args.extend(DEMO_MERCHANT);
        let err = Config::from_args_without_env(args)
            .unwrap()
            .resolve_secrets()
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(err.setting, "GATEWAY_AUTH_TOKEN");
        assert!(
            err.problem.starts_with("only with GRPC_AUTH_TOKEN"),
            "{err}"
        );
        assert!(!err.to_string().contains(GATEWAY_TOKEN), "{err}");
    }

    #[test]
    fn the_gateway_token_can_come_from_a_file() {
        let path = std::env::temp_dir().join(format!(
            "pay-svc-gateway-token-{}",
            paynotify::wxpay::time::nonce_str()
        ));
        std::fs::write(&path, "gateway-token-from-a-file-0123\n").unwrap();
        let file = path.to_str().unwrap();
        let config = with(&["--gateway-auth-token-file", file])
            .resolve_secrets()
            .unwrap();
        assert_eq!(
            config.gateway_auth_token.as_ref().unwrap().expose_secret(),
            "gateway-token-from-a-file-0123"
        );
        assert_eq!(config.validate(), Ok(()));

        // The file is checked like the setting: the token that opens every method is refused,
        // and so is one too short.
        std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
        let err = with(&["--gateway-auth-token-file", file])
            .resolve_secrets()
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(err.setting, "GATEWAY_AUTH_TOKEN");
        assert!(
            err.problem.starts_with("must differ from GRPC_AUTH_TOKEN"),
            "{err}"
        );
        std::fs::write(&path, "short\n").unwrap();
        let err = with(&["--gateway-auth-token-file", file])
            .resolve_secrets()
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(err.setting, "GATEWAY_AUTH_TOKEN");
        std::fs::remove_file(&path).unwrap();

        let err = with(&["--gateway-auth-token-file", file])
            .resolve_secrets()
            .unwrap_err();
        assert!(
            err.to_string().starts_with("GATEWAY_AUTH_TOKEN_FILE: "),
            "{err}"
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let cases: &[(&[&str], &str)] = &[
            (&["--wxpay-api-key", "short"], "WXPAY_API_KEY"),
            (
                &["--wxpay-api-key", "T6m9iK73b0kn9g5v426MKfHQH7X8rKw!"],
                "WXPAY_API_KEY",
            ),
            (
                &["--wxpay-notify-url", "http://example.com/notify?x=1"],
                "WXPAY_NOTIFY_URL",
            ),
            (
                &["--wxpay-notify-url", "ftp://example.com/notify"],
                "WXPAY_NOTIFY_URL",
            ),
            (&["--wxpay-notify-url", "/notify"], "WXPAY_NOTIFY_URL"),
            (&["--wxpay-mch-id", "12ab"], "WXPAY_MCH_ID"),
            (&["--wxpay-appid", ""], "WXPAY_APPID"),
            (&["--order-svc-url", "127.0.0.1:50052"], "ORDER_SVC_URL"),
            (&["--wxpay-api-base", "nope"], "WXPAY_API_BASE"),
            (&["--wxpay-timeout-ms", "0"], "WXPAY_TIMEOUT_MS"),
            (
                &["--reconcile-queries-per-sec", "0"],
                "RECONCILE_QUERIES_PER_SEC",
            ),
            (
                &["--reconcile-max-age-secs", "30"],
                "RECONCILE_MAX_AGE_SECS",
            ),
            (
                &["--reconcile-close-after-secs", "86400"],
                "RECONCILE_CLOSE_AFTER_SECS",
            ),
            // A window too short for two intervals after the closing age.
            (
                &[
                    "--reconcile-max-age-secs",
                    "3600",
                    "--reconcile-close-after-secs",
                    "3500",
                ],
                "RECONCILE_CLOSE_AFTER_SECS",
            ),
            (
                &[
                    "--reconcile-interval-secs",
                    "3600",
                    "--reconcile-max-age-secs",
                    "3600",
                    "--reconcile-close-after-secs",
                    "0",
                ],
                "RECONCILE_CLOSE_AFTER_SECS",
            ),
            // Closed on the first visit.
            (
                &[
                    "--reconcile-min-age-secs",
                    "60",
                    "--reconcile-close-after-secs",
                    "90",
                ],
                "RECONCILE_CLOSE_AFTER_SECS",
            ),
            (&["--grpc-auth-token", "short"], "GRPC_AUTH_TOKEN"),
            (&["--order-svc-auth-token", "short"], "ORDER_SVC_AUTH_TOKEN"),
            (
                &["--order-svc-auth-token", "pay-svc-order-svc token"],
                "ORDER_SVC_AUTH_TOKEN",
            ),
            (&["--gateway-auth-token", "short"], "GATEWAY_AUTH_TOKEN"),
            (
                &["--gateway-auth-token", "pay-svc-gateway token"],
                "GATEWAY_AUTH_TOKEN",
            ),
        ];
        for (args, setting) in cases {
            let err = with(args).validate().unwrap_err();
            assert_eq!(err.setting, *setting, "{args:?}");
            assert!(!err.to_string().contains("T6m9iK73"));
        }
        // Disabled reconciliation does not care about its other settings.
        let off = with(&[
            "--reconcile-interval-secs",
            "0",
            "--reconcile-queries-per-sec",
            "0",
        ]);
        assert_eq!(off.validate(), Ok(()));
    }

    #[test]
    fn unpaid_orders_are_closed_before_they_leave_the_window() {
        let defaults = with(&[]);
        assert_eq!(defaults.validate(), Ok(()));
        assert_eq!(
            defaults.reconcile_close_after(),
            Some(Duration::from_secs(82_800))
        );
        // The default follows the window: a one-hour window (with a one-minute interval)
        // closes at 57.5 minutes, and a window of few intervals two intervals before its end.
        let hour = with(&["--reconcile-max-age-secs", "3600"]);
        assert_eq!(hour.validate(), Ok(()));
        assert_eq!(
            hour.reconcile_close_after(),
            Some(Duration::from_secs(3450))
        );
        let short = with(&["--reconcile-max-age-secs", "600"]);
        assert_eq!(short.validate(), Ok(()));
        assert_eq!(
            short.reconcile_close_after(),
            Some(Duration::from_secs(480))
        );
        // A window shorter than two intervals leaves no room: the start is refused.
        let err = with(&["--reconcile-max-age-secs", "100"])
            .validate()
            .unwrap_err();
        assert_eq!(err.setting, "RECONCILE_CLOSE_AFTER_SECS");
        assert!(err.problem.contains("the default"), "{err}");
        // The latest closing age a one-minute interval allows in a one-hour window.
        let edge = with(&[
            "--reconcile-max-age-secs",
            "3600",
            "--reconcile-close-after-secs",
            "3480",
        ]);
        assert_eq!(edge.validate(), Ok(()));
        // Turned off, the closing age does not matter.
        let off = with(&[
            "--reconcile-close-unpaid",
            "false",
            "--reconcile-close-after-secs",
            "999999",
        ]);
        assert_eq!(off.validate(), Ok(()));
        assert_eq!(off.reconcile_close_after(), None);
        // Without an upper bound an order is never left behind: any closing age will do.
        let unbounded = with(&[
            "--reconcile-max-age-secs",
            "0",
            "--reconcile-close-after-secs",
            "999999",
        ]);
        assert_eq!(unbounded.validate(), Ok(()));
    }

    #[test]
    fn the_key_can_come_from_a_file() {
        let path = std::env::temp_dir().join(format!(
            "pay-svc-key-{}",
            paynotify::wxpay::time::nonce_str()
        ));
        std::fs::write(&path, "A".repeat(32) + "\n").unwrap();
        // The file alone is enough: no WXPAY_API_KEY.
        let config = Config::from_args_without_env([
            "pay-svc",
            "--wxpay-appid",
            DEMO_APPID,
            "--wxpay-mch-id",
            DEMO_MCH_ID,
            "--wxpay-api-key-file",
            path.to_str().unwrap(),
            "--grpc-auth-token",
            TOKEN,
            "--order-svc-auth-token",
            ORDER_TOKEN,
        ])
        .unwrap()
        .resolve_secrets()
        .unwrap();
        assert_eq!(config.wxpay_api_key.expose_secret(), "A".repeat(32));
        assert_eq!(config.validate(), Ok(()));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn the_client_config_follows_the_settings() {
        let config = with(&[
            "--wxpay-sign-type",
            "HMAC-SHA256",
            "--wxpay-api-backup-base",
            "https://api2.mch.weixin.qq.com",
            "--wxpay-timeout-ms",
            "700",
        ]);
        let client = config.wechat_client_config();
        assert_eq!(client.sign_type, SignType::HmacSha256);
        assert_eq!(
            client.backup_base_url.as_deref(),
            Some("https://api2.mch.weixin.qq.com")
        );
        assert_eq!(client.request_timeout, Duration::from_millis(700));
        assert_eq!(client.appid, DEMO_APPID);
        assert_eq!(client.mch_id, DEMO_MCH_ID);
    }
}
