//! Client side of "several replicas of every service": one lazily connected channel per
//! downstream address, calls spread round-robin, and a replica that cannot be reached is
//! skipped (and avoided for a moment) instead of waited on.
//!
//! `https://` addresses are dialled over TLS, trusting what the given [`ClientTls`] trusts;
//! `http://` ones in plaintext, where the bearer token travels readable: the caller, which
//! knows the token, says so at start with [`warn_if_token_in_cleartext`].
//!
//! Failing over is only safe because every call that goes through here is idempotent
//! (`ConfirmPayment`, `MarkPaid`, reads); the caller decides what it sends. That includes a
//! call the dying replica may already have carried out: sent again, it is answered as a
//! duplicate.

use std::{
    future::Future,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use secrecy::SecretString;
use tonic::{Code, Status, transport::Endpoint};

use crate::tls::ClientTls;
use crate::unary_body::{GrpcChannel, ending_with_last_frame};

/// How long a replica that refused a connection is tried last.
const DOWN_FOR: Duration = Duration::from_secs(2);

/// How long a connection may go without a frame from the replica before an HTTP/2 PING is
/// sent on it (idle or not), and how long the PING may then go unanswered before the
/// connection is dropped. A replica whose host lost power, or that a partition black-holes,
/// never closes its connections: without the PING every call sent on one waits for the whole
/// request timeout and ends CANCELLED, which is no reason to fail over, so every call
/// round-robined to it times out (all of them behind one load-balanced address) until the
/// kernel gives up retransmitting, after about 15 minutes. With it the connection is dropped at
/// most 7 s after the replica's last frame; the calls still on it end UNAVAILABLE, and the
/// next ones redial, which fails as UNAVAILABLE too (refused, or after the connect timeout):
/// both fail over. A live replica answers at once, even when busy (the PONG is written by the
/// connection task, not by a handler), and tonic's (hyper's) server does not limit how often
/// it may be pinged.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// TCP keepalive as a second line, kept by the kernel whatever the HTTP/2 layer does: probes
/// after 5 s without traffic, 2 s apart, the connection reset after 3 unanswered. It also
/// keeps idle connections alive in the firewalls and NATs on the way. It never fires while
/// sent data is unacknowledged (the black hole with a call in flight), hence the PINGs.
const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const TCP_KEEPALIVE_RETRIES: u32 = 3;

/// The metadata entry (sent as a trailer) with which a server marks an UNAVAILABLE status as
/// "a dependency of mine answered with a failure every replica would get", not "I cannot
/// serve"; its value names the dependency (pay-svc marks WeChat's 5xx, SYSTEMERROR and FAIL
/// answers `wechat`). Such a status goes back to the caller at once and the replica is not
/// avoided: failing over would only multiply the calls to a dependency that is already
/// failing.
pub const DEPENDENCY_FAILED: &str = "x-paynotify-dependency";

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("{setting}: at least one address is needed")]
    NoAddress { setting: &'static str },
    #[error("{setting}: `{url}` is not a valid URL: {source}")]
    BadUrl {
        setting: &'static str,
        url: String,
        source: tonic::transport::Error,
    },
    #[error(
        "{setting}: cannot set up TLS for `{url}` (to trust a private CA, set GRPC_TLS_CA_FILE): {source}"
    )]
    Tls {
        setting: &'static str,
        url: String,
        source: tonic::transport::Error,
    },
}

struct Replica {
    url: String,
    channel: GrpcChannel,
    /// Milliseconds since `Replicas::epoch` until which this replica is avoided.
    down_until_ms: AtomicU64,
}

/// The replicas of one downstream service.
pub struct Replicas {
    replicas: Vec<Replica>,
    next: AtomicUsize,
    epoch: Instant,
}

impl Replicas {
    /// One lazily connected channel per URL; nothing is dialled until the first call.
    /// `setting` names the configuration key in error messages; `tls` is what `https://`
    /// URLs trust.
    pub fn connect_lazy(
        setting: &'static str,
        urls: &[String],
        connect_timeout: Duration,
        request_timeout: Duration,
        tls: &ClientTls,
    ) -> Result<Replicas, ReplicaError> {
        let replicas = urls
            .iter()
            .map(|url| url.trim())
            .filter(|url| !url.is_empty())
            .map(|url| {
                let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|source| {
                    ReplicaError::BadUrl {
                        setting,
                        url: url.to_owned(),
                        source,
                    }
                })?;
                let endpoint = if endpoint.uri().scheme_str() == Some("https") {
                    endpoint
                        .tls_config(tls.config())
                        .map_err(|source| ReplicaError::Tls {
                            setting,
                            url: url.to_owned(),
                            source,
                        })?
                } else {
                    endpoint
                };
                let channel = endpoint
                    .connect_timeout(connect_timeout)
                    .timeout(request_timeout)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                    .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                    .keep_alive_while_idle(true)
                    .tcp_keepalive(Some(TCP_KEEPALIVE_IDLE))
                    .tcp_keepalive_interval(Some(TCP_KEEPALIVE_INTERVAL))
                    .tcp_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES))
                    .connect_lazy();
                let channel = ending_with_last_frame(channel);
                Ok(Replica {
                    url: url.to_owned(),
                    channel,
                    down_until_ms: AtomicU64::new(0),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if replicas.is_empty() {
            return Err(ReplicaError::NoAddress { setting });
        }
        Ok(Replicas {
            replicas,
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
        })
    }

    /// Calls `call` on one replica, round-robin. When a replica answers UNAVAILABLE (it cannot
    /// be reached, or it is draining) or the connection breaks under the call (it died
    /// mid-request), it is avoided for a moment and the next one is tried, so each replica is
    /// tried at most once. Other errors, and an UNAVAILABLE marked with [`DEPENDENCY_FAILED`],
    /// are returned as they are.
    pub async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, Status>
    where
        F: FnMut(GrpcChannel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut last_error = None;
        for index in self.order() {
            let replica = &self.replicas[index];
            match call(replica.channel.clone()).await {
                Err(status) if replica_failed(&status) => {
                    tracing::warn!(replica = %replica.url, message = %status.message(), "replica unavailable, trying the next");
                    let until = self.now_ms() + DOWN_FOR.as_millis() as u64;
                    replica.down_until_ms.store(until, Ordering::Relaxed);
                    last_error = Some(status);
                }
                result => return result,
            }
        }
        Err(last_error.unwrap_or_else(|| Status::unavailable("no replica")))
    }

    /// Every replica once, starting at the round-robin position, the ones recently found down
    /// last.
    fn order(&self) -> Vec<usize> {
        let count = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let now = self.now_ms();
        let (mut up, down): (Vec<usize>, Vec<usize>) = (0..count)
            .map(|offset| (start + offset) % count)
            .partition(|&i| self.replicas[i].down_until_ms.load(Ordering::Relaxed) <= now);
        up.extend(down);
        up
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// Logs a WARN at start for every address of `urls` (the setting `setting`) to which `token`
/// would be sent in cleartext: an `http://` address on another host, where anyone on the path
/// can read the token and call the service. Loopback (the devstack, tests, a sidecar) is
/// spared. The token itself is never logged.
pub fn warn_if_token_in_cleartext<'a>(
    setting: &'static str,
    urls: impl IntoIterator<Item = &'a str>,
    token: Option<&SecretString>,
) {
    if token.is_none() {
        return;
    }
    for url in urls.into_iter().map(str::trim) {
        if sends_in_cleartext_off_host(url) {
            tracing::warn!(
                event = "grpc.token_in_cleartext",
                setting,
                url,
                "the bearer token goes to this address unencrypted (http:// to another host), readable on the way; use https:// (docs/DEPLOYMENT.md)"
            );
        }
    }
}

/// `url` is `http://` to a host other than loopback. What does not parse is left to
/// [`Replicas::connect_lazy`] to refuse.
fn sends_in_cleartext_off_host(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    if !uri
        .scheme_str()
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http"))
    {
        return false;
    }
    let Some(host) = uri.host() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|ip| ip.is_loopback())
        }
        Ok(ip) => ip.is_loopback(),
        // RFC 6761: `localhost` and the names under it resolve to loopback.
        Err(_) => {
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            host == "localhost" || host.ends_with(".localhost")
        }
    };
    !loopback
}

/// UNAVAILABLE (unless the replica said a dependency of its own failed, [`DEPENDENCY_FAILED`]),
/// or the local transport failing under the call: tonic reports a connection that broke
/// mid-request (a replica killed while serving it) as UNKNOWN with the transport error as its
/// source, while an UNKNOWN the server itself sent has no source.
fn replica_failed(status: &Status) -> bool {
    use std::error::Error as _;
    match status.code() {
        Code::Unavailable => !status.metadata().contains_key(DEPENDENCY_FAILED),
        Code::Unknown => status
            .source()
            .is_some_and(|source| source.is::<tonic::transport::Error>()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataValue;

    use super::*;

    #[test]
    fn only_plain_http_to_another_host_exposes_the_token() {
        for url in [
            "http://pay-svc.internal:50051",
            "http://10.0.0.7:50051",
            "HTTP://pay-svc:50051",
            "http://[2001:db8::1]:50051",
            "http://localhost.example.com:50051",
        ] {
            assert!(sends_in_cleartext_off_host(url), "{url}");
        }
        for url in [
            "https://pay-svc.internal:50051",
            "http://127.0.0.1:50051",
            "http://127.1.2.3:50051",
            "http://[::1]:50051",
            "http://[::ffff:127.0.0.1]:50051",
            "http://localhost:50051",
            "http://LOCALHOST.:50051",
            "http://pay-svc.localhost:50051",
            "not a url",
        ] {
            assert!(!sends_in_cleartext_off_host(url), "{url}");
        }
    }

    #[test]
    fn unavailable_fails_over_unless_a_dependency_failed() {
        assert!(replica_failed(&Status::unavailable("connection refused")));

        let mut dependency = Status::unavailable("orderquery: timed out");
        dependency
            .metadata_mut()
            .insert(DEPENDENCY_FAILED, MetadataValue::from_static("wechat"));
        assert!(!replica_failed(&dependency));

        // The entry means nothing on other codes.
        assert!(!replica_failed(&Status::internal("db")));
        assert!(!replica_failed(&Status::unknown("sent by the server")));
    }
}
