//! The channels to pay-svc, built at start and shared by every request.

use std::time::Duration;

use paynotify::replicas::{ReplicaError, Replicas};

/// pay-svc refuses or accepts a connection quickly on a healthy network.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Lazily connected channels to every configured pay-svc replica.
pub fn connect(urls: &[String], request_timeout: Duration) -> Result<Replicas, ReplicaError> {
    Replicas::connect_lazy("PAY_SVC_URL", urls, CONNECT_TIMEOUT, request_timeout)
}
