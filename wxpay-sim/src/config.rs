//! The simulator's settings: the one merchant account it serves, where it listens, how fast
//! simulated time runs, and the faults it starts with (among them `SIM_UNKNOWN_FIELD`, which
//! lives with the faults so that `PUT /sim/faults` can switch it at run time). Every setting is
//! a clap flag backed by an environment variable, with a TOML file (`--config`) under them (see
//! [`crate::cli::load`]).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use paynotify::{runtime::LogFormat, wxpay::sign::SignType};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::faults::{Faults, FaultsError};

/// The demo merchant account: public test values, not a real merchant.
pub const DEMO_APPID: &str = "wx8397f8696b538317";
pub const DEMO_MCH_ID: &str = "1473426802";
pub const DEMO_API_KEY: &str = "T6m9iK73b0kn9g5v426MKfHQH7X8rKwb";
pub const DEFAULT_ADDR: &str = "127.0.0.1:9020";

/// WeChat's reply deadline for a notification (SPEC §1.4), before time scaling.
pub const WECHAT_REPLY_DEADLINE: Duration = Duration::from_secs(5);
/// The scaled reply deadline never drops below this: a loaded test machine still needs time
/// to answer a local request.
pub const MIN_REPLY_DEADLINE: Duration = Duration::from_millis(200);

/// The merchant account (appid, mch_id, API v2 key) the simulator plays WeChat for.
#[derive(Clone, Debug, clap::Args, Deserialize)]
#[serde(default)]
pub struct Merchant {
    /// The merchant's appid.
    #[arg(long, env = "WXPAY_APPID", default_value = DEMO_APPID)]
    pub appid: String,
    /// The merchant number.
    #[arg(long, env = "WXPAY_MCH_ID", default_value = DEMO_MCH_ID)]
    pub mch_id: String,
    /// The API v2 key that signs every message.
    #[arg(
        long,
        env = "WXPAY_API_KEY",
        default_value = DEMO_API_KEY,
        hide_default_value = true,
        hide_env_values = true
    )]
    pub api_key: SecretString,
    /// Read the API v2 key from this file instead (a trailing newline is dropped).
    #[arg(long, env = "WXPAY_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
}

impl Default for Merchant {
    fn default() -> Self {
        Merchant {
            appid: DEMO_APPID.into(),
            mch_id: DEMO_MCH_ID.into(),
            api_key: SecretString::from(DEMO_API_KEY),
            api_key_file: None,
        }
    }
}

impl Merchant {
    pub(crate) fn key(&self) -> &str {
        self.api_key.expose_secret()
    }

    /// Replaces the key by WXPAY_API_KEY_FILE's content, when a file is given.
    pub fn resolve_key_file(&mut self) -> Result<(), ConfigError> {
        if let Some(path) = &self.api_key_file {
            let key = std::fs::read_to_string(path).map_err(|e| ConfigError::KeyFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            self.api_key = SecretString::from(key.trim_end_matches(['\r', '\n']).to_owned());
        }
        Ok(())
    }
}

/// The signature algorithm, as a flag value (`md5`, `hmac-sha256`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
pub enum SignAlgorithm {
    #[default]
    #[value(name = "md5")]
    #[serde(rename = "md5", alias = "MD5")]
    Md5,
    #[value(name = "hmac-sha256")]
    #[serde(rename = "hmac-sha256", alias = "HMAC-SHA256")]
    HmacSha256,
}

impl From<SignAlgorithm> for SignType {
    fn from(algorithm: SignAlgorithm) -> Self {
        match algorithm {
            SignAlgorithm::Md5 => SignType::Md5,
            SignAlgorithm::HmacSha256 => SignType::HmacSha256,
        }
    }
}

/// Everything `wxpay-sim serve` needs. `Default` is the demo account on 127.0.0.1:9020 in real
/// time with no faults, and reads no environment.
#[derive(Clone, Debug, clap::Args, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "SIM_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,
    #[command(flatten)]
    pub merchant: Merchant,
    /// Multiplies every notification retry interval and the reply deadline: 1.0 is real time,
    /// 0.001 runs WeChat's 24-hour retry schedule in about 87 seconds.
    #[arg(long, env = "SIM_TIME_SCALE", default_value_t = 1.0)]
    pub time_scale: f64,
    /// How long a notify_url may take to answer before the attempt counts as failed.
    /// Default: 5 s × time scale, but at least 200 ms.
    #[arg(long, env = "SIM_REPLY_DEADLINE_MS")]
    pub reply_deadline_ms: Option<u64>,
    /// How notifications are signed.
    #[arg(long, env = "SIM_NOTIFY_SIGN_TYPE", value_enum, default_value = "md5")]
    pub notify_sign_type: SignAlgorithm,
    /// Seed for the fault-injection dice, for reproducible runs.
    #[arg(long, env = "SIM_SEED")]
    pub seed: Option<u64>,
    /// The faults and protocol surprises it starts with; `PUT /sim/faults` replaces them.
    #[command(flatten)]
    pub faults: Faults,
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 9020)),
            merchant: Merchant::default(),
            time_scale: 1.0,
            reply_deadline_ms: None,
            notify_sign_type: SignAlgorithm::Md5,
            seed: None,
            faults: Faults::default(),
            log_format: LogFormat::Text,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("SIM_TIME_SCALE (--time-scale) must be a positive finite number, got {0}")]
    TimeScale(f64),
    #[error("SIM_REPLY_DEADLINE_MS (--reply-deadline-ms) must be at least 1")]
    ReplyDeadline,
    #[error("{name} must not be empty")]
    Empty { name: &'static str },
    #[error("invalid fault settings: {0}")]
    Faults(#[from] FaultsError),
    #[error("WXPAY_API_KEY_FILE (--api-key-file): cannot read `{}`: {reason}", path.display())]
    KeyFile { path: PathBuf, reason: String },
}

impl Config {
    /// Reads the settings given as files (WXPAY_API_KEY_FILE).
    pub fn resolve_secrets(mut self) -> Result<Config, ConfigError> {
        self.merchant.resolve_key_file()?;
        Ok(self)
    }

    /// Checks every setting, naming the bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            return Err(ConfigError::TimeScale(self.time_scale));
        }
        if self.reply_deadline_ms == Some(0) {
            return Err(ConfigError::ReplyDeadline);
        }
        for (name, value) in [
            ("WXPAY_APPID (--appid)", self.merchant.appid.as_str()),
            ("WXPAY_MCH_ID (--mch-id)", self.merchant.mch_id.as_str()),
            ("WXPAY_API_KEY (--api-key)", self.merchant.key()),
        ] {
            if value.is_empty() {
                return Err(ConfigError::Empty { name });
            }
        }
        self.faults.validate()?;
        Ok(())
    }

    /// A real-time span as simulated time.
    pub fn scaled(&self, real: Duration) -> Duration {
        real.mul_f64(self.time_scale)
    }

    /// How long a notification reply may take.
    pub fn reply_deadline(&self) -> Duration {
        match self.reply_deadline_ms {
            Some(ms) => Duration::from_millis(ms),
            None => self.scaled(WECHAT_REPLY_DEADLINE).max(MIN_REPLY_DEADLINE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn default_is_the_demo_account_in_real_time() {
        let config = Config::default();
        assert_eq!(config.addr.to_string(), DEFAULT_ADDR);
        assert_eq!(config.merchant.appid, DEMO_APPID);
        assert_eq!(config.merchant.key(), DEMO_API_KEY);
        assert_eq!(config.reply_deadline(), Duration::from_secs(5));
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn flags_parse_like_the_defaults() {
        let parsed = Cli::try_parse_from(["wxpay-sim"]).unwrap().config;
        assert_eq!(parsed.addr, Config::default().addr);
        assert_eq!(parsed.faults, crate::Faults::default());
        let parsed = Cli::try_parse_from([
            "wxpay-sim",
            "--time-scale",
            "0.001",
            "--notify-sign-type",
            "hmac-sha256",
            "--notify-duplicates",
            "3",
            "--orderquery-fail-modes",
            "hang,http500",
            "--unknown-field",
        ])
        .unwrap()
        .config;
        assert_eq!(parsed.time_scale, 0.001);
        assert_eq!(parsed.notify_sign_type, SignAlgorithm::HmacSha256);
        assert_eq!(parsed.faults.notify_duplicates, 3);
        assert_eq!(
            parsed.faults.orderquery_fail_modes,
            [crate::FailMode::Hang, crate::FailMode::Http500]
        );
        assert!(parsed.faults.unknown_field);
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let text = format!("{:?}", Config::default());
        assert!(!text.contains(DEMO_API_KEY));
    }

    #[test]
    fn the_reply_deadline_scales_with_a_floor() {
        let mut config = Config {
            time_scale: 0.1,
            ..Config::default()
        };
        assert_eq!(config.reply_deadline(), Duration::from_millis(500));
        config.time_scale = 0.001;
        assert_eq!(config.reply_deadline(), MIN_REPLY_DEADLINE);
        config.reply_deadline_ms = Some(50);
        assert_eq!(config.reply_deadline(), Duration::from_millis(50));
    }

    #[test]
    fn bad_settings_are_named() {
        let config = Config {
            time_scale: 0.0,
            ..Config::default()
        };
        assert_eq!(config.validate(), Err(ConfigError::TimeScale(0.0)));
        let mut config = Config::default();
        config.merchant.api_key = SecretString::from("");
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("WXPAY_API_KEY")
        );
    }
}
