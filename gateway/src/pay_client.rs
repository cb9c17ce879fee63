//! The channels to pay-svc, built at start and shared by every request: plaintext for
//! `http://` addresses, TLS for `https://` ones (trusting GRPC_TLS_CA_FILE, or the system's
//! trust store).

use std::time::Duration;

use paynotify::replicas::Replicas;

use crate::Config;

/// pay-svc refuses or accepts a connection quickly on a healthy network.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Lazily connected channels to every configured pay-svc replica.
pub fn connect(config: &Config) -> anyhow::Result<Replicas> {
    let tls = config.pay_svc_tls()?;
    paynotify::replicas::warn_if_token_in_cleartext(
        "PAY_SVC_URL",
        config.pay_svc_urls.iter().map(String::as_str),
        config.grpc_auth_token.as_ref(),
    );
    Ok(Replicas::connect_lazy(
        "PAY_SVC_URL",
        &config.pay_svc_urls,
        CONNECT_TIMEOUT,
        config.upstream_timeout(),
        &tls,
    )?)
}
