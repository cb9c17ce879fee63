//! pay-svc's metrics (names and meanings in docs/OPERATIONS.md). The handles are registered
//! once, after the process-wide recorder is installed, so the request path only touches
//! atomics: no label is built per call.

use std::{sync::LazyLock, time::Instant};

use metrics::{Counter, Gauge, Histogram, Unit};
use paynotify::{
    metrics::seconds_since,
    proto::pay::v1::NotifyOutcome,
    wxpay::client::{OrderQuery, WechatError},
};

/// Who asked WeChat: a notification being confirmed, reconciliation, or a QueryOrder call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuerySource {
    Notification,
    Reconciliation,
    Api,
}

impl QuerySource {
    const ALL: [QuerySource; 3] = [
        QuerySource::Notification,
        QuerySource::Reconciliation,
        QuerySource::Api,
    ];

    fn as_str(self) -> &'static str {
        match self {
            QuerySource::Notification => "notification",
            QuerySource::Reconciliation => "reconciliation",
            QuerySource::Api => "query_order",
        }
    }
}

/// The gRPC methods timed by the shared layer.
pub const GRPC_METHODS: &[&str] = &[
    "/pay.v1.PayService/ConfirmPayment",
    "/pay.v1.PayService/CreateNativePay",
    "/pay.v1.PayService/QueryOrder",
    "/grpc.health.v1.Health/Check",
];

/// A notification's outcome label: the verdict, or `dependency_error` when none was reached.
const OUTCOMES: [(&str, Option<NotifyOutcome>); 13] = [
    ("unspecified", Some(NotifyOutcome::Unspecified)),
    ("paid", Some(NotifyOutcome::Paid)),
    ("duplicate", Some(NotifyOutcome::Duplicate)),
    ("not_paid", Some(NotifyOutcome::NotPaid)),
    ("return_fail", Some(NotifyOutcome::ReturnFail)),
    ("bad_signature", Some(NotifyOutcome::BadSignature)),
    ("wrong_merchant", Some(NotifyOutcome::WrongMerchant)),
    ("amount_mismatch", Some(NotifyOutcome::AmountMismatch)),
    ("unknown_order", Some(NotifyOutcome::UnknownOrder)),
    ("not_confirmed", Some(NotifyOutcome::NotConfirmed)),
    ("payment_conflict", Some(NotifyOutcome::PaymentConflict)),
    ("malformed", Some(NotifyOutcome::Malformed)),
    ("dependency_error", None),
];

/// What an orderquery call came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryResult {
    /// A verified reply with a trade_state.
    Ok,
    /// `ORDERNOTEXIST`: WeChat has no such order.
    OrderNotExist,
    /// Another business error code.
    BusinessError,
    /// return_code FAIL (e.g. our request's signature, or a parameter).
    ReturnFail,
    /// The reply's signature did not verify.
    BadSignature,
    Timeout,
    /// Unreachable, connection reset, TLS.
    Transport,
    /// A non-2xx HTTP status.
    HttpStatus,
    /// Unparseable or incomplete reply, or a local configuration problem.
    Malformed,
}

impl QueryResult {
    const ALL: [QueryResult; 9] = [
        QueryResult::Ok,
        QueryResult::OrderNotExist,
        QueryResult::BusinessError,
        QueryResult::ReturnFail,
        QueryResult::BadSignature,
        QueryResult::Timeout,
        QueryResult::Transport,
        QueryResult::HttpStatus,
        QueryResult::Malformed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueryResult::Ok => "ok",
            QueryResult::OrderNotExist => "order_not_exist",
            QueryResult::BusinessError => "business_error",
            QueryResult::ReturnFail => "return_fail",
            QueryResult::BadSignature => "bad_signature",
            QueryResult::Timeout => "timeout",
            QueryResult::Transport => "transport",
            QueryResult::HttpStatus => "http_status",
            QueryResult::Malformed => "malformed",
        }
    }

    pub fn of(result: &Result<OrderQuery, WechatError>) -> QueryResult {
        match result {
            Ok(_) => QueryResult::Ok,
            Err(err) if err.err_code() == Some("ORDERNOTEXIST") => QueryResult::OrderNotExist,
            Err(WechatError::Business { .. }) => QueryResult::BusinessError,
            Err(WechatError::ReturnFail { .. }) => QueryResult::ReturnFail,
            Err(WechatError::BadSignature { .. }) => QueryResult::BadSignature,
            Err(WechatError::Timeout { .. }) => QueryResult::Timeout,
            Err(WechatError::Transport { .. }) => QueryResult::Transport,
            Err(WechatError::HttpStatus { .. }) => QueryResult::HttpStatus,
            Err(_) => QueryResult::Malformed,
        }
    }
}

/// What reconciling one order did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// Paid at WeChat, no notification: marked paid now.
    Paid,
    /// Paid at WeChat, but the claim ended otherwise (duplicate, mismatch, conflict, ...).
    OtherVerdict,
    /// WeChat reports CLOSED or REVOKED: closed in order-svc.
    Closed,
    /// Still unpaid at WeChat at the closing age: closed there (closeorder), then in order-svc.
    ClosedUnpaid,
    /// Due for closing, but closeorder failed: tried again on the next visit.
    CloseDeferred,
    /// Paid and refunded at WeChat, never recorded as paid here: reported, left unpaid.
    Refunded,
    /// Still unpaid at WeChat (or unknown to it): left for the next sweep.
    Left,
    /// orderquery or order-svc failed for this order.
    Failed,
}

impl Found {
    const ALL: [Found; 8] = [
        Found::Paid,
        Found::OtherVerdict,
        Found::Closed,
        Found::ClosedUnpaid,
        Found::CloseDeferred,
        Found::Refunded,
        Found::Left,
        Found::Failed,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Found::Paid => "paid",
            Found::OtherVerdict => "other_verdict",
            Found::Closed => "closed",
            Found::ClosedUnpaid => "closed_unpaid",
            Found::CloseDeferred => "close_deferred",
            Found::Refunded => "refunded",
            Found::Left => "left",
            Found::Failed => "failed",
        }
    }
}

struct Metrics {
    notifications: [Counter; OUTCOMES.len()],
    /// `[source][result]`.
    orderquery_calls: [[Counter; QueryResult::ALL.len()]; QuerySource::ALL.len()],
    orderquery_seconds: [Histogram; QueryResult::ALL.len()],
    previous_key: [Counter; 2],
    reconcile_runs_ok: Counter,
    reconcile_runs_failed: Counter,
    reconcile_orders: [Counter; Found::ALL.len()],
    reconcile_pending: Gauge,
    reconcile_last_success: Gauge,
    reconcile_seconds: Histogram,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    paynotify::metrics::init();
    metrics::describe_counter!(
        "paysvc_notifications_total",
        "Payment notifications decided by ConfirmPayment, by outcome"
    );
    metrics::describe_counter!(
        "paysvc_orderquery_total",
        "WeChat orderquery calls (retries included in one call), by what they came to"
    );
    metrics::describe_histogram!(
        "paysvc_orderquery_duration_seconds",
        Unit::Seconds,
        "WeChat orderquery latency, retries included, by result"
    );
    metrics::describe_counter!(
        "paysvc_previous_key_accepted_total",
        "Messages verified only with WXPAY_API_KEY_PREVIOUS (key rotation in progress)"
    );
    metrics::describe_counter!(
        "paysvc_reconcile_runs_total",
        "Reconciliation sweeps, by whether the list of pending orders could be read"
    );
    metrics::describe_counter!(
        "paysvc_reconcile_orders_total",
        "Orders examined by reconciliation, by what was found"
    );
    metrics::describe_gauge!(
        "paysvc_reconcile_pending_orders",
        "Unpaid orders old enough to reconcile, as of the last sweep"
    );
    metrics::describe_gauge!(
        "paysvc_reconcile_last_success_timestamp_seconds",
        Unit::Seconds,
        "Unix time the last sweep finished listing and querying"
    );
    metrics::describe_histogram!(
        "paysvc_reconcile_duration_seconds",
        Unit::Seconds,
        "How long one reconciliation sweep took"
    );
    let per_source = |source: QuerySource| {
        QueryResult::ALL.map(|result| {
            metrics::counter!(
                "paysvc_orderquery_total",
                "source" => source.as_str(),
                "result" => result.as_str()
            )
        })
    };
    Metrics {
        notifications: OUTCOMES.map(|(label, _)| {
            metrics::counter!("paysvc_notifications_total", "outcome" => label)
        }),
        orderquery_calls: QuerySource::ALL.map(per_source),
        orderquery_seconds: QueryResult::ALL.map(|result| {
            metrics::histogram!("paysvc_orderquery_duration_seconds", "result" => result.as_str())
        }),
        previous_key: [
            metrics::counter!("paysvc_previous_key_accepted_total", "message" => "notification"),
            metrics::counter!("paysvc_previous_key_accepted_total", "message" => "orderquery"),
        ],
        reconcile_runs_ok: metrics::counter!("paysvc_reconcile_runs_total", "result" => "ok"),
        reconcile_runs_failed: metrics::counter!(
            "paysvc_reconcile_runs_total",
            "result" => "failed"
        ),
        reconcile_orders: Found::ALL.map(|found| {
            metrics::counter!("paysvc_reconcile_orders_total", "found" => found.as_str())
        }),
        reconcile_pending: metrics::gauge!("paysvc_reconcile_pending_orders"),
        reconcile_last_success: metrics::gauge!("paysvc_reconcile_last_success_timestamp_seconds"),
        reconcile_seconds: metrics::histogram!("paysvc_reconcile_duration_seconds"),
    }
});

/// Registers every series at start, so they read 0 rather than being absent until first use.
pub fn register() {
    LazyLock::force(&METRICS);
}

/// One notification decided (`Some(outcome)`) or left without a verdict (`None`).
pub fn notification(outcome: Option<NotifyOutcome>) {
    let index = OUTCOMES
        .iter()
        .position(|(_, o)| *o == outcome)
        .unwrap_or(0);
    METRICS.notifications[index].increment(1);
}

/// One orderquery call and how long it took.
pub fn orderquery(source: QuerySource, result: QueryResult, started: Instant) {
    let index = QueryResult::ALL
        .iter()
        .position(|r| *r == result)
        .unwrap_or(0);
    let source = QuerySource::ALL
        .iter()
        .position(|s| *s == source)
        .unwrap_or(0);
    METRICS.orderquery_calls[source][index].increment(1);
    METRICS.orderquery_seconds[index].record(seconds_since(started));
}

/// A message that verified only with the previous API key.
pub fn previous_key_accepted(orderquery: bool) {
    METRICS.previous_key[usize::from(orderquery)].increment(1);
}

/// One reconciliation sweep.
pub fn reconcile_run(pending: Option<usize>, started: Instant) {
    METRICS.reconcile_seconds.record(seconds_since(started));
    match pending {
        Some(pending) => {
            METRICS.reconcile_runs_ok.increment(1);
            METRICS.reconcile_pending.set(pending as f64);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            METRICS.reconcile_last_success.set(now);
        }
        None => METRICS.reconcile_runs_failed.increment(1),
    }
}

/// One order examined by reconciliation.
pub fn reconciled(found: Found) {
    let index = Found::ALL.iter().position(|f| *f == found).unwrap_or(0);
    METRICS.reconcile_orders[index].increment(1);
}
