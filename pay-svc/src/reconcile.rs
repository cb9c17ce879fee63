//! Reconciliation: WeChat does not guarantee that a notification ever arrives (SPEC §1.5), so
//! a background task periodically asks order-svc for orders still unpaid after a while and
//! queries each with orderquery, at a bounded rate. A SUCCESS goes through the same checks and
//! MarkPaid as a notification (`confirm`); CLOSED or REVOKED closes the order in order-svc;
//! REFUND (paid and refunded, never recorded here) is reported, never marked paid; anything
//! else (NOTPAY, USERPAYING, ...) is left for the next run.
//!
//! Each run takes the next page of pending orders (`RECONCILE_BATCH` of them) after where the
//! previous run stopped, and starts again from the oldest once it reaches the newest. Always
//! taking the oldest page would let a backlog of abandoned (NOTPAY) orders, the common case in
//! a shop, hide every newer order from reconciliation; walking the pages reaches every pending
//! order once per `ceil(pending / batch)` runs.
//!
//! Closing, WeChat's "closed loop" (SPEC §3.3, §8): order-svc stops listing an order once it is
//! `max_age` old, and an order left open at WeChat could still be paid after that, unnoticed if
//! the notification is lost. So an order still unpaid at WeChat (NOTPAY, PAYERROR) once it is
//! `close_after` old is closed at WeChat (closeorder) and only then in order-svc. closeorder's
//! ORDERPAID means the buyer paid since the query: the order is queried again and confirmed
//! like any payment. ORDERCLOSED closes it here too. Any other failure leaves it for the next
//! visit (`close_after` is below `max_age` by at least two intervals), at WARN when this was
//! probably the last one. A paid order is never closed: it is closed here only once WeChat has
//! closed it, and order-svc's CloseOrder refuses a paid order anyway.
//!
//! Several replicas may run this at once: MarkPaid, closeorder and CloseOrder are idempotent,
//! so the worst case is a duplicate orderquery or closeorder. The task stops when the server
//! shuts down.

use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use paynotify::{
    proto::{
        order::v1::{CloseOrderOutcome, Order},
        pay::v1::NotifyOutcome,
    },
    wxpay::client::{OrderQuery, OrderRef, TradeState},
};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::{
    claim::PaymentClaim,
    confirm::{Confirmer, Evidence},
    error::{PayError, chain},
    metrics::{self, Found, QuerySource},
    verdict::{Source, Verdict},
};

#[derive(Clone, Debug, PartialEq)]
pub struct ReconcileSettings {
    pub interval: Duration,
    pub min_age: Duration,
    /// `None`: no upper bound.
    pub max_age: Option<Duration>,
    pub batch: u32,
    pub queries_per_sec: f64,
    /// Orders still unpaid at WeChat this long after creation are closed, there and in
    /// order-svc. `None`: never (the merchant closes its orders itself).
    pub close_after: Option<Duration>,
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub pending: usize,
    pub paid: usize,
    /// Verdicts other than PAID (duplicates, mismatches, conflicts).
    pub other_verdicts: usize,
    pub closed: usize,
    /// Unpaid at the end of the window: closed at WeChat, then in order-svc.
    pub closed_unpaid: usize,
    /// Due for closing, but closeorder failed: tried again on the next visit.
    pub close_deferred: usize,
    /// Paid and refunded at WeChat, never recorded as paid here.
    pub refunded: usize,
    pub left: usize,
    pub failed: usize,
}

/// What reconciling one order did.
#[derive(Debug)]
enum Action {
    Decided(Verdict),
    Closed,
    ClosedUnpaid,
    CloseDeferred,
    Refunded,
    Left,
}

/// Runs until `cancel` fires: a first run after a random part of the interval (so replicas
/// started together do not query in step), then one run per interval.
pub async fn run(confirmer: Confirmer, settings: ReconcileSettings, cancel: CancellationToken) {
    let interval_ms = u64::try_from(settings.interval.as_millis()).unwrap_or(u64::MAX);
    let first = Duration::from_millis(rand::rng().random_range(0..interval_ms.max(1)));
    tracing::info!(
        interval_secs = settings.interval.as_secs(),
        first_run_in_ms = u64::try_from(first.as_millis()).unwrap_or(u64::MAX),
        close_after_secs = settings.close_after.map(|d| d.as_secs()),
        "reconciliation started"
    );
    let mut delay = first;
    let mut cursor = PageCursor::default();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            result = run_once(&confirmer, &settings, &mut cursor, &cancel) => match result {
                Ok(summary) => tracing::info!(?summary, "reconciliation run finished"),
                Err(err) => tracing::warn!(error = %chain(&err), "reconciliation run failed"),
            },
        }
        delay = settings.interval;
    }
    tracing::info!("reconciliation stopped");
}

/// Where the walk through the pending orders is: order-svc's page token for the next page
/// (empty to start from the oldest), and how long a whole walk takes, which is about the
/// time until reconciliation sees an order again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageCursor {
    token: String,
    walk_started: Option<Instant>,
    last_walk: Option<Duration>,
}

impl PageCursor {
    /// A page from the oldest order was just listed: a new walk starts.
    fn walk_starts(&mut self, now: Instant) {
        if let Some(started) = self.walk_started {
            self.last_walk = Some(now.saturating_duration_since(started));
        }
        self.walk_started = Some(now);
    }

    /// How long until this process lists an order of this walk again: a whole walk, at
    /// least one interval (the first walk's length is not known yet).
    fn revisit_in(&self, interval: Duration) -> Duration {
        self.last_walk.unwrap_or_default().max(interval)
    }
}

/// One page of the pending orders, after `cursor`; moves `cursor` on to the next page, or back
/// to the oldest order when this page was the last.
pub async fn run_once(
    confirmer: &Confirmer,
    settings: &ReconcileSettings,
    cursor: &mut PageCursor,
    cancel: &CancellationToken,
) -> Result<RunSummary, PayError> {
    let started = Instant::now();
    let page = match confirmer
        .orders
        .list_pending(
            settings.min_age,
            settings.max_age,
            settings.batch,
            &cursor.token,
        )
        .await
    {
        Ok(page) => page,
        Err(err) => {
            metrics::reconcile_run(None, started);
            // A token order-svc no longer takes (a replica of another version, say) must not
            // stop reconciliation for good: the next run starts from the oldest again.
            if matches!(err, PayError::OrderSvc(_)) {
                cursor.token.clear();
            }
            return Err(err);
        }
    };
    if cursor.token.is_empty() {
        cursor.walk_starts(started);
    }
    cursor.token = page.next_page_token;
    let revisit_in = cursor.revisit_in(settings.interval);
    let pending = page.orders;
    let mut summary = RunSummary {
        pending: pending.len(),
        ..RunSummary::default()
    };
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / settings.queries_per_sec));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for order in pending {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = pace.tick() => {}
        }
        let found = match reconcile_order(confirmer, settings, &order, revisit_in).await {
            Ok(Action::Decided(verdict)) if verdict.outcome == NotifyOutcome::Paid => {
                summary.paid += 1;
                Found::Paid
            }
            Ok(Action::Decided(_)) => {
                summary.other_verdicts += 1;
                Found::OtherVerdict
            }
            Ok(Action::Closed) => {
                summary.closed += 1;
                Found::Closed
            }
            Ok(Action::ClosedUnpaid) => {
                summary.closed_unpaid += 1;
                Found::ClosedUnpaid
            }
            Ok(Action::CloseDeferred) => {
                summary.close_deferred += 1;
                Found::CloseDeferred
            }
            Ok(Action::Refunded) => {
                summary.refunded += 1;
                Found::Refunded
            }
            Ok(Action::Left) => {
                summary.left += 1;
                Found::Left
            }
            Err(err) => {
                summary.failed += 1;
                tracing::warn!(out_trade_no = %order.id, error = %chain(&err), "reconciling an order failed");
                Found::Failed
            }
        };
        metrics::reconciled(found);
    }
    metrics::reconcile_run(Some(summary.pending), started);
    Ok(summary)
}

#[tracing::instrument(skip_all, fields(out_trade_no = %order.id), level = "debug")]
async fn reconcile_order(
    confirmer: &Confirmer,
    settings: &ReconcileSettings,
    order: &Order,
    revisit_in: Duration,
) -> Result<Action, PayError> {
    let out_trade_no = order.id.as_str();
    let query = order_query(confirmer, out_trade_no).await?;
    if let Some(query) = &query
        && let Some(action) = settle(confirmer, out_trade_no, query).await?
    {
        return Ok(action);
    }
    // Unpaid at WeChat, or never submitted to it.
    let age = age(&order.create_time, SystemTime::now());
    if age.is_none() && settings.close_after.is_some() {
        tracing::warn!(
            out_trade_no,
            create_time = %order.create_time,
            "order-svc's create_time is unreadable: the order's age is unknown, so it is not closed"
        );
    }
    match (closing(age, settings, revisit_in), query) {
        (Closing::Wait, _) => {
            tracing::debug!(out_trade_no, "order left as it is");
            Ok(Action::Left)
        }
        (Closing::Close { last_visit }, Some(query)) => {
            close_unpaid(confirmer, out_trade_no, &query.trade_state, last_visit).await
        }
        // WeChat has nothing to close; closed here, no payment can be started for it any more
        // (CreateNativePay refuses a closed order, and checks again after its unifiedorder).
        // One submitted between the query and the close is closed at WeChat too, or, paid
        // already, recorded (PAYMENT_CONFLICT and an anomaly: someone refunds it).
        (Closing::Close { last_visit }, None) => {
            let closed = close_here(
                confirmer,
                out_trade_no,
                "never submitted to WeChat, at the end of reconciliation",
            )
            .await?;
            let Some(query) = order_query(confirmer, out_trade_no).await? else {
                return Ok(closed);
            };
            match settle(confirmer, out_trade_no, &query).await? {
                Some(action) => Ok(action),
                None => close_unpaid(confirmer, out_trade_no, &query.trade_state, last_visit).await,
            }
        }
    }
}

/// WeChat's record of the order, or `None` when WeChat has no such order: never submitted (no
/// unifiedorder yet), so there is nothing to reconcile, and nothing to close at WeChat.
async fn order_query(
    confirmer: &Confirmer,
    out_trade_no: &str,
) -> Result<Option<OrderQuery>, PayError> {
    let order_ref = OrderRef::OutTradeNo(out_trade_no.to_owned());
    match confirmer
        .wechat
        .order_query(&order_ref, QuerySource::Reconciliation)
        .await
    {
        Ok(query) => Ok(Some(query)),
        Err(err) if err.err_code() == Some("ORDERNOTEXIST") => {
            tracing::debug!(out_trade_no, "WeChat has no such order yet");
            Ok(None)
        }
        Err(err) => Err(err.into()),
    }
}

/// What WeChat's record settles: a payment is confirmed, a closed order closed here, a refund
/// reported. `None` when WeChat has the order unpaid (NOTPAY, PAYERROR), which only closing
/// ends; orders being paid (USERPAYING, ACCEPT) and states this code does not know are left.
async fn settle(
    confirmer: &Confirmer,
    out_trade_no: &str,
    query: &OrderQuery,
) -> Result<Option<Action>, PayError> {
    match &query.trade_state {
        TradeState::Success => {
            let transaction_id = query.transaction_id.clone();
            let verdict = if query.out_trade_no != out_trade_no {
                Verdict::new(
                    NotifyOutcome::NotConfirmed,
                    "WeChat answered for another out_trade_no",
                )
            } else {
                match PaymentClaim::from_query(query) {
                    Ok(claim) => confirmer.confirm(&claim, Evidence::Queried(query)).await?,
                    Err(reason) => Verdict::new(NotifyOutcome::Malformed, reason),
                }
            };
            verdict.log(Source::Reconciliation, out_trade_no, &transaction_id);
            Ok(Some(Action::Decided(verdict)))
        }
        TradeState::Closed | TradeState::Revoked => {
            let reason = format!("wechat trade_state {}", query.trade_state);
            let outcome = confirmer.orders.close(out_trade_no, &reason).await?;
            tracing::info!(
                out_trade_no,
                outcome = outcome.as_str_name(),
                %reason,
                "order closed by reconciliation"
            );
            Ok(Some(Action::Closed))
        }
        // Paid, then refunded, and the payment never reached this system (its notification
        // was lost): the order stays unpaid (the money went back), but someone should know.
        TradeState::Refund => {
            tracing::warn!(
                event = "reconcile.refunded_unrecorded",
                out_trade_no,
                // orderquery names no transaction outside SUCCESS (SPEC §3.2): the merchant
                // platform finds the refund by out_trade_no.
                "WeChat reports a refunded payment for an order never recorded as paid; left unpaid"
            );
            Ok(Some(Action::Refunded))
        }
        TradeState::NotPay | TradeState::PayError => Ok(None),
        other => {
            tracing::debug!(out_trade_no, trade_state = %other, "order left as it is");
            Ok(Some(Action::Left))
        }
    }
}

/// Closes an order WeChat has unpaid: at WeChat first, so that it can no longer be paid, and
/// only then in order-svc.
async fn close_unpaid(
    confirmer: &Confirmer,
    out_trade_no: &str,
    trade_state: &TradeState,
    last_visit: bool,
) -> Result<Action, PayError> {
    let err = match confirmer.wechat.client().close_order(out_trade_no).await {
        Ok(()) => {
            let reason =
                format!("still {trade_state} at the end of reconciliation: closed at WeChat");
            return close_here(confirmer, out_trade_no, &reason).await;
        }
        Err(err) => err,
    };
    match err.err_code() {
        Some("ORDERCLOSED") => {
            close_here(
                confirmer,
                out_trade_no,
                "closeorder: ORDERCLOSED (closed at WeChat)",
            )
            .await
        }
        // The buyer paid between the query and the close: a fresh record is the evidence for
        // confirming it the way every payment is.
        Some("ORDERPAID") => {
            tracing::info!(
                event = "reconcile.paid_while_closing",
                out_trade_no,
                "closeorder: ORDERPAID, the order was paid since the query; querying it again"
            );
            let Some(query) = order_query(confirmer, out_trade_no).await? else {
                return Ok(Action::CloseDeferred);
            };
            match settle(confirmer, out_trade_no, &query).await? {
                Some(action) => Ok(action),
                None => {
                    tracing::warn!(
                        out_trade_no,
                        trade_state = %query.trade_state,
                        "closeorder said ORDERPAID, orderquery says unpaid; left for the next visit"
                    );
                    Ok(Action::CloseDeferred)
                }
            }
        }
        // SYSTEMERROR, USERPAYING, transport errors...: the next visit tries again.
        _ => {
            if last_visit {
                tracing::warn!(
                    event = "reconcile.left_unclosed",
                    out_trade_no,
                    error = %chain(&err),
                    "closeorder failed, and reconciliation will likely not see this order again: close it at WeChat by hand"
                );
            } else {
                tracing::info!(out_trade_no, error = %chain(&err), "closeorder failed; tried again on the next visit");
            }
            Ok(Action::CloseDeferred)
        }
    }
}

/// CloseOrder in order-svc once WeChat has the order closed.
async fn close_here(
    confirmer: &Confirmer,
    out_trade_no: &str,
    reason: &str,
) -> Result<Action, PayError> {
    let outcome = confirmer.orders.close(out_trade_no, reason).await?;
    if outcome == CloseOrderOutcome::AlreadyPaid {
        // WeChat has it closed, and it can only be paid here through a payment WeChat confirmed.
        tracing::warn!(
            event = "reconcile.close_conflict",
            out_trade_no,
            %reason,
            "closed at WeChat, but order-svc has the order paid; left as it is"
        );
        return Ok(Action::Left);
    }
    tracing::info!(
        out_trade_no,
        outcome = outcome.as_str_name(),
        %reason,
        "order closed by reconciliation"
    );
    Ok(Action::ClosedUnpaid)
}

/// Whether an order WeChat has unpaid is closed on this visit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closing {
    /// Too young, closing is off, or its age is not known.
    Wait,
    /// `last_visit`: it will probably have left the window by the next visit, so a failure to
    /// close it now would go unrepaired.
    Close { last_visit: bool },
}

fn closing(age: Option<Duration>, settings: &ReconcileSettings, revisit_in: Duration) -> Closing {
    let (Some(age), Some(close_after)) = (age, settings.close_after) else {
        return Closing::Wait;
    };
    if age < close_after {
        return Closing::Wait;
    }
    let last_visit = settings
        .max_age
        .is_some_and(|max_age| age.saturating_add(revisit_in) >= max_age);
    Closing::Close { last_visit }
}

/// How old an order created at `create_time` (order-svc's RFC 3339) is at `now`; zero when
/// the clocks disagree the other way, `None` when the time cannot be read.
fn age(create_time: &str, now: SystemTime) -> Option<Duration> {
    let created = DateTime::parse_from_rfc3339(create_time).ok()?;
    Some(
        (DateTime::<Utc>::from(now) - created.with_timezone(&Utc))
            .to_std()
            .unwrap_or_default(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn settings(close_after: Option<Duration>, max_age: Option<Duration>) -> ReconcileSettings {
        ReconcileSettings {
            interval: Duration::from_secs(60),
            min_age: Duration::from_secs(60),
            max_age,
            batch: 100,
            queries_per_sec: 5.0,
            close_after,
        }
    }

    #[test]
    fn an_order_is_closed_from_the_closing_age_on() {
        let s = settings(Some(23 * HOUR), Some(24 * HOUR));
        let minute = Duration::from_secs(60);
        assert_eq!(closing(Some(HOUR), &s, minute), Closing::Wait);
        assert_eq!(
            closing(Some(23 * HOUR - Duration::from_secs(1)), &s, minute),
            Closing::Wait
        );
        assert_eq!(
            closing(Some(23 * HOUR), &s, minute),
            Closing::Close { last_visit: false }
        );
        // The next visit would come after the order left the window.
        assert_eq!(
            closing(Some(24 * HOUR - Duration::from_secs(30)), &s, minute),
            Closing::Close { last_visit: true }
        );
        // A long walk (many pending pages) makes an earlier visit the last one.
        assert_eq!(
            closing(Some(23 * HOUR + 10 * minute), &s, HOUR),
            Closing::Close { last_visit: true }
        );
    }

    #[test]
    fn nothing_is_closed_when_closing_is_off_or_the_age_unknown() {
        let off = settings(None, Some(24 * HOUR));
        assert_eq!(closing(Some(30 * HOUR), &off, HOUR), Closing::Wait);
        let on = settings(Some(23 * HOUR), Some(24 * HOUR));
        assert_eq!(closing(None, &on, HOUR), Closing::Wait);
    }

    #[test]
    fn without_a_window_the_last_visit_never_comes() {
        let s = settings(Some(23 * HOUR), None);
        assert_eq!(
            closing(Some(1000 * HOUR), &s, HOUR),
            Closing::Close { last_visit: false }
        );
    }

    #[test]
    fn age_is_measured_from_creation() {
        let created = "2024-02-29T12:00:00Z";
        let at = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(
            age(created, at(1_709_208_000 + 90)),
            Some(Duration::from_secs(90))
        );
        // A clock behind order-svc's: not old at all.
        assert_eq!(age(created, at(1_709_207_000)), Some(Duration::ZERO));
        assert_eq!(
            age("2024-02-29T12:00:00.123456+00:00", at(1_709_208_000 + 90)),
            Some(Duration::from_micros(89_876_544))
        );
        for unreadable in [
            "",
            "2024-02-29",
            "2024-02-29 12:00:00",
            "2024-13-01T00:00:00Z",
        ] {
            assert_eq!(age(unreadable, at(0)), None, "{unreadable}");
        }
    }

    #[test]
    fn the_revisit_time_is_the_last_walk_or_one_interval() {
        let interval = Duration::from_secs(60);
        let mut cursor = PageCursor::default();
        assert_eq!(cursor.revisit_in(interval), interval);
        let start = Instant::now();
        cursor.walk_starts(start);
        assert_eq!(cursor.revisit_in(interval), interval);
        cursor.walk_starts(start + Duration::from_secs(600));
        assert_eq!(cursor.revisit_in(interval), Duration::from_secs(600));
        cursor.walk_starts(start + Duration::from_secs(630));
        assert_eq!(cursor.revisit_in(interval), interval);
    }
}
