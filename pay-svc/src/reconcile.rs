//! Reconciliation: WeChat does not guarantee that a notification ever arrives (SPEC §1.5), so
//! a background task periodically asks order-svc for orders still unpaid after a while and
//! queries each with orderquery, at a bounded rate. A SUCCESS goes through the same checks and
//! MarkPaid as a notification (`confirm`); CLOSED or REVOKED closes the order in order-svc;
//! anything else (NOTPAY, USERPAYING, ...) is left for the next run.
//!
//! Each run takes the next page of pending orders (`RECONCILE_BATCH` of them) after where the
//! previous run stopped, and starts again from the oldest once it reaches the newest. Always
//! taking the oldest page would let a backlog of abandoned (NOTPAY) orders, the common case in
//! a shop, hide every newer order from reconciliation; walking the pages reaches every pending
//! order once per `ceil(pending / batch)` runs.
//!
//! Several replicas may run this at once: MarkPaid and CloseOrder are idempotent, so the worst
//! case is a duplicate orderquery. The task stops when the server shuts down.

use std::time::{Duration, Instant};

use paynotify::{
    proto::pay::v1::NotifyOutcome,
    wxpay::client::{OrderRef, TradeState},
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
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub pending: usize,
    pub paid: usize,
    /// Verdicts other than PAID (duplicates, mismatches, conflicts).
    pub other_verdicts: usize,
    pub closed: usize,
    pub left: usize,
    pub failed: usize,
}

/// What reconciling one order did.
#[derive(Debug)]
enum Action {
    Decided(Verdict),
    Closed,
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

/// Where the walk through the pending orders is: order-svc's page token for the next page,
/// empty to start from the oldest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageCursor(String);

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
            &cursor.0,
        )
        .await
    {
        Ok(page) => page,
        Err(err) => {
            metrics::reconcile_run(None, started);
            // A token order-svc no longer takes (a replica of another version, say) must not
            // stop reconciliation for good: the next run starts from the oldest again.
            if matches!(err, PayError::OrderSvc(_)) {
                *cursor = PageCursor::default();
            }
            return Err(err);
        }
    };
    *cursor = PageCursor(page.next_page_token);
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
        let found = match reconcile_order(confirmer, &order.id).await {
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

#[tracing::instrument(skip(confirmer), level = "debug")]
async fn reconcile_order(confirmer: &Confirmer, out_trade_no: &str) -> Result<Action, PayError> {
    let order_ref = OrderRef::OutTradeNo(out_trade_no.to_owned());
    let query = match confirmer
        .wechat
        .order_query(&order_ref, QuerySource::Reconciliation)
        .await
    {
        Ok(query) => query,
        // Never submitted to WeChat (no unifiedorder yet): nothing to reconcile.
        Err(err) if err.err_code() == Some("ORDERNOTEXIST") => {
            tracing::debug!(out_trade_no, "WeChat has no such order yet");
            return Ok(Action::Left);
        }
        Err(err) => return Err(err.into()),
    };
    match &query.trade_state {
        TradeState::Success => {
            let transaction_id = query.transaction_id.clone();
            let verdict = if query.out_trade_no != out_trade_no {
                Verdict::new(
                    NotifyOutcome::NotConfirmed,
                    "WeChat answered for another out_trade_no",
                )
            } else {
                match PaymentClaim::from_query(&query) {
                    Ok(claim) => confirmer.confirm(&claim, Evidence::Queried(&query)).await?,
                    Err(reason) => Verdict::new(NotifyOutcome::Malformed, reason),
                }
            };
            verdict.log(Source::Reconciliation, out_trade_no, &transaction_id);
            Ok(Action::Decided(verdict))
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
            Ok(Action::Closed)
        }
        other => {
            tracing::debug!(out_trade_no, trade_state = %other, "order left as it is");
            Ok(Action::Left)
        }
    }
}
