//! order-svc's metrics (names and meanings in docs/OPERATIONS.md): MarkPaid outcomes and
//! latency, and payment anomalies recorded. Handles are registered once, after the
//! process-wide recorder is installed; the request path only touches atomics.

use std::{sync::LazyLock, time::Instant};

use metrics::{Counter, Histogram, Unit};
use paynotify::metrics::seconds_since;

use crate::db::entities::pay_anomaly::Kind as AnomalyKind;

/// The gRPC methods timed by the shared layer.
pub const GRPC_METHODS: &[&str] = &[
    "/order.v1.OrderService/CreateOrder",
    "/order.v1.OrderService/GetOrder",
    "/order.v1.OrderService/MarkPaid",
    "/order.v1.OrderService/ListOrderLogs",
    "/order.v1.OrderService/ListPendingOrders",
    "/order.v1.OrderService/CloseOrder",
    "/grpc.health.v1.Health/Check",
];

/// What one MarkPaid call came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkPaidResult {
    MarkedPaid,
    AlreadyPaid,
    PaymentConflict,
    /// FAILED_PRECONDITION: the amount is not the order's pay_money.
    AmountMismatch,
    /// FAILED_PRECONDITION: the transaction already paid another order.
    TransactionReused,
    NotFound,
    Invalid,
    /// Contention, an unexpected order state, the database.
    Error,
}

impl MarkPaidResult {
    const ALL: [MarkPaidResult; 8] = [
        MarkPaidResult::MarkedPaid,
        MarkPaidResult::AlreadyPaid,
        MarkPaidResult::PaymentConflict,
        MarkPaidResult::AmountMismatch,
        MarkPaidResult::TransactionReused,
        MarkPaidResult::NotFound,
        MarkPaidResult::Invalid,
        MarkPaidResult::Error,
    ];

    fn as_str(self) -> &'static str {
        match self {
            MarkPaidResult::MarkedPaid => "marked_paid",
            MarkPaidResult::AlreadyPaid => "already_paid",
            MarkPaidResult::PaymentConflict => "payment_conflict",
            MarkPaidResult::AmountMismatch => "amount_mismatch",
            MarkPaidResult::TransactionReused => "transaction_reused",
            MarkPaidResult::NotFound => "not_found",
            MarkPaidResult::Invalid => "invalid",
            MarkPaidResult::Error => "error",
        }
    }
}

struct Metrics {
    mark_paid: [Counter; MarkPaidResult::ALL.len()],
    mark_paid_seconds: [Histogram; MarkPaidResult::ALL.len()],
    /// One per [`AnomalyKind`], in the order of `AnomalyKind::ALL`.
    anomalies: [Counter; AnomalyKind::ALL.len()],
    /// SQLite group commit: groups committed, and the payments in them.
    paid_groups: Counter,
    paid_grouped: Counter,
    /// SQLite batched reads: batches read, and the orders asked for in them.
    read_batches: Counter,
    read_batched: Counter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    paynotify::metrics::init();
    metrics::describe_counter!("ordersvc_mark_paid_total", "MarkPaid calls, by outcome");
    metrics::describe_histogram!(
        "ordersvc_mark_paid_duration_seconds",
        Unit::Seconds,
        "MarkPaid latency (validation and the database transaction), by outcome"
    );
    metrics::describe_counter!(
        "ordersvc_payment_anomalies_total",
        "Payments that could not be applied and were recorded in pay_anomaly for a refund"
    );
    metrics::describe_counter!(
        "ordersvc_mark_paid_groups_total",
        "SQLite: MarkPaid group commits (one transaction and fsync each)"
    );
    metrics::describe_counter!(
        "ordersvc_mark_paid_grouped_total",
        "SQLite: MarkPaid calls run in group commits; divided by the groups, the mean group size"
    );
    metrics::describe_counter!(
        "ordersvc_get_order_batches_total",
        "SQLite: batched reads of orders by id (one SELECT each)"
    );
    metrics::describe_counter!(
        "ordersvc_get_order_batched_total",
        "SQLite: reads of an order by id run in batches; divided by the batches, the mean batch size"
    );
    Metrics {
        read_batches: metrics::counter!("ordersvc_get_order_batches_total"),
        read_batched: metrics::counter!("ordersvc_get_order_batched_total"),
        paid_groups: metrics::counter!("ordersvc_mark_paid_groups_total"),
        paid_grouped: metrics::counter!("ordersvc_mark_paid_grouped_total"),
        mark_paid: MarkPaidResult::ALL
            .map(|r| metrics::counter!("ordersvc_mark_paid_total", "outcome" => r.as_str())),
        mark_paid_seconds: MarkPaidResult::ALL.map(
            |r| metrics::histogram!("ordersvc_mark_paid_duration_seconds", "outcome" => r.as_str()),
        ),
        anomalies: AnomalyKind::ALL.map(
            |kind| metrics::counter!("ordersvc_payment_anomalies_total", "kind" => kind.as_str()),
        ),
    }
});

/// Registers every series at start, so they read 0 rather than being absent until first use.
pub fn register() {
    LazyLock::force(&METRICS);
}

pub fn mark_paid(result: MarkPaidResult, started: Instant) {
    let index = MarkPaidResult::ALL
        .iter()
        .position(|r| *r == result)
        .unwrap_or(0);
    METRICS.mark_paid[index].increment(1);
    METRICS.mark_paid_seconds[index].record(seconds_since(started));
}

/// One SQLite group commit of `payments` MarkPaid calls is about to run.
pub fn paid_group(payments: usize) {
    METRICS.paid_groups.increment(1);
    METRICS
        .paid_grouped
        .increment(u64::try_from(payments).unwrap_or(u64::MAX));
}

/// One SQLite batched read of `orders` orders by id is about to run.
pub fn read_batch(orders: usize) {
    METRICS.read_batches.increment(1);
    METRICS
        .read_batched
        .increment(u64::try_from(orders).unwrap_or(u64::MAX));
}

/// A payment anomaly recorded for the first time.
pub fn anomaly(kind: AnomalyKind) {
    if let Some(index) = AnomalyKind::ALL.iter().position(|k| *k == kind) {
        METRICS.anomalies[index].increment(1);
    }
}
