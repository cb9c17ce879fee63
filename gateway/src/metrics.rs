//! The gateway's metrics (names and meanings in docs/OPERATIONS.md): what WeChat was answered
//! and why, and how long requests took. Served on the gateway's own port at `GET /metrics`.
//! Handles are registered once, after the process-wide recorder is installed.

use std::{sync::LazyLock, time::Instant};

use metrics::{Counter, Histogram, Unit};
use paynotify::metrics::seconds_since;

/// Why the gateway answered WeChat what it did: the `reason` of
/// `gateway_notify_replies_total` (`ack` is SUCCESS only for `acknowledged`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyReason {
    /// pay-svc's verdict says handled for good: SUCCESS.
    Acknowledged,
    /// pay-svc's verdict is a rejection (bad signature, unknown order, not confirmed, ...).
    Rejected,
    /// Not a notification the parser accepts (not XML, DOCTYPE, duplicate fields, ...).
    Unparseable,
    /// Over the 64 KiB body limit.
    TooLarge,
    /// The body could not be read (connection reset, bad chunking).
    BodyError,
    /// The body arrived too slowly.
    BodyTimeout,
    /// pay-svc answered with an error status (unreachable, order-svc or WeChat down, ...).
    UpstreamError,
    /// pay-svc did not answer within GATEWAY_UPSTREAM_TIMEOUT_MS.
    UpstreamTimeout,
}

impl ReplyReason {
    const ALL: [ReplyReason; 8] = [
        ReplyReason::Acknowledged,
        ReplyReason::Rejected,
        ReplyReason::Unparseable,
        ReplyReason::TooLarge,
        ReplyReason::BodyError,
        ReplyReason::BodyTimeout,
        ReplyReason::UpstreamError,
        ReplyReason::UpstreamTimeout,
    ];

    fn as_str(self) -> &'static str {
        match self {
            ReplyReason::Acknowledged => "acknowledged",
            ReplyReason::Rejected => "rejected",
            ReplyReason::Unparseable => "unparseable",
            ReplyReason::TooLarge => "too_large",
            ReplyReason::BodyError => "body_error",
            ReplyReason::BodyTimeout => "body_timeout",
            ReplyReason::UpstreamError => "upstream_error",
            ReplyReason::UpstreamTimeout => "upstream_timeout",
        }
    }

    fn ack(self) -> &'static str {
        match self {
            ReplyReason::Acknowledged => "SUCCESS",
            _ => "FAIL",
        }
    }
}

/// The routes timed by `gateway_http_request_duration_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Notify,
    Healthz,
    Metrics,
    Other,
}

impl Route {
    const ALL: [Route; 4] = [Route::Notify, Route::Healthz, Route::Metrics, Route::Other];

    fn as_str(self) -> &'static str {
        match self {
            Route::Notify => "/wxpay/notify",
            Route::Healthz => "/healthz",
            Route::Metrics => "/metrics",
            Route::Other => "other",
        }
    }
}

struct Metrics {
    replies: [Counter; ReplyReason::ALL.len()],
    requests: [Histogram; Route::ALL.len()],
    shed: Counter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    paynotify::metrics::init();
    metrics::describe_counter!(
        "gateway_notify_replies_total",
        "Replies to WeChat's notifications, by ack (SUCCESS stops WeChat's retries) and reason"
    );
    metrics::describe_histogram!(
        "gateway_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP requests served, by route, from the request head to the reply"
    );
    metrics::describe_counter!(
        "gateway_connections_shed_total",
        "Connections closed at once because GATEWAY_MAX_CONNECTIONS were open"
    );
    Metrics {
        replies: ReplyReason::ALL.map(|reason| {
            metrics::counter!(
                "gateway_notify_replies_total",
                "ack" => reason.ack(),
                "reason" => reason.as_str()
            )
        }),
        requests: Route::ALL.map(|route| {
            metrics::histogram!("gateway_http_request_duration_seconds", "route" => route.as_str())
        }),
        shed: metrics::counter!("gateway_connections_shed_total"),
    }
});

/// Registers every series at start, so they read 0 rather than being absent until first use.
pub fn register() {
    LazyLock::force(&METRICS);
}

pub fn reply(reason: ReplyReason) {
    let index = ReplyReason::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(0);
    METRICS.replies[index].increment(1);
}

pub fn request(route: Route, started: Instant) {
    let index = Route::ALL.iter().position(|r| *r == route).unwrap_or(0);
    METRICS.requests[index].record(seconds_since(started));
}

pub fn connection_shed() {
    METRICS.shed.increment(1);
}
