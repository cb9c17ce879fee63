//! MarkPaid for an order in a (pay_status, order_status) pair order-svc never writes — the
//! original system's pay_status "2" (payment failed), or a NULL status — and the refusal
//! metadata pay-svc relies on to tell an amount mismatch from other refusals. On every backend.

use order_svc::db::entities::order;
use order_svc::error::{REFUSAL_KEY, REFUSED_AMOUNT_MISMATCH, REFUSED_TRANSACTION_REUSED};
use order_svc::testing::Backend;
use paynotify::proto::order::v1 as pb;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tonic::Code;

use crate::{Harness, mark_paid, outcome, transaction_id};

on_each_backend!(
    payment_in_an_unexpected_state_is_recorded_once,
    refusals_say_which_they_are,
);

/// Sets the order's status columns as another system might have left them.
async fn set_statuses(
    h: &Harness,
    order_id: &str,
    pay_status: Option<&str>,
    order_status: Option<&str>,
) -> anyhow::Result<()> {
    let updated = order::Entity::update_many()
        .col_expr(
            order::Column::PayStatus,
            Expr::value(pay_status.map(str::to_owned)),
        )
        .col_expr(
            order::Column::OrderStatus,
            Expr::value(order_status.map(str::to_owned)),
        )
        .filter(order::Column::Id.eq(order_id))
        .exec(&h.db)
        .await?;
    anyhow::ensure!(updated.rows_affected == 1, "no order {order_id}");
    Ok(())
}

async fn order_row(h: &Harness, order_id: &str) -> anyhow::Result<Option<order::Model>> {
    Ok(order::Entity::find_by_id(order_id).one(&h.db).await?)
}

/// WeChat confirmed the money, so the payment must not be lost: PAYMENT_CONFLICT, one
/// `paid_in_unexpected_state` anomaly and one log row however many copies arrive, and the
/// order left exactly as it was (pay_status "2" is not made payable).
async fn payment_in_an_unexpected_state_is_recorded_once(backend: Backend) -> anyhow::Result<()> {
    let h = Harness::start(backend).await?;
    for (n, (pay_status, order_status)) in [(Some("2"), Some("0")), (None, None)]
        .into_iter()
        .enumerate()
    {
        let case = format!("pay_status {pay_status:?}, order_status {order_status:?}");
        let created = h.create_order(4200).await?;
        set_statuses(&h, &created.id, pay_status, order_status).await?;
        let before = h.get_order(&created.id).await?;
        // What lets pay-svc's own checks pass it on to MarkPaid.
        assert_eq!(before.state(), pb::OrderState::Unspecified, "{case}");
        let row_before = order_row(&h, &created.id).await?;
        let tx = transaction_id(100 + u32::try_from(n)?);

        for _ in 0..2 {
            let response = h.mark_paid(&created.id, &tx, 4200).await?;
            assert_eq!(
                outcome(&response),
                pb::MarkPaidOutcome::PaymentConflict,
                "{case}"
            );
            assert!(
                response.detail.contains("pay_status") && response.detail.contains(&tx),
                "{case}: {}",
                response.detail
            );
            assert_eq!(response.order.as_ref(), Some(&before), "{case}");
        }
        // Copies at once (on SQLite, in one group commit) still record it once.
        let copies = (0..8).map(|_| {
            let client = h.client.clone();
            let (order_id, tx) = (created.id.clone(), tx.clone());
            tokio::spawn(async move { mark_paid(&client, &order_id, &tx, 4200).await })
        });
        for copy in futures::future::join_all(copies).await {
            assert_eq!(
                outcome(&copy??),
                pb::MarkPaidOutcome::PaymentConflict,
                "{case}"
            );
        }

        assert_eq!(order_row(&h, &created.id).await?, row_before, "{case}");
        let anomalies = h.anomalies(&created.id).await?;
        assert_eq!(anomalies.len(), 1, "{case}: {anomalies:?}");
        let anomaly = &anomalies[0];
        assert_eq!(anomaly.kind, "paid_in_unexpected_state", "{case}");
        assert_eq!(
            (anomaly.transaction_id.as_str(), anomaly.amount_fen),
            (tx.as_str(), 4200),
            "{case}"
        );
        let logs = h.logs(&created.id).await?;
        assert_eq!(logs.len(), 1, "{case}: {logs:?}");
        assert_eq!(
            (logs[0].pay_status.as_str(), logs[0].order_status.as_str()),
            (pay_status.unwrap_or(""), order_status.unwrap_or("")),
            "{case}"
        );
        assert_eq!(logs[0].money, 4200, "{case}");
        assert!(logs[0].remarks.contains(&tx), "{case}: {}", logs[0].remarks);
    }
    Ok(())
}

/// The FAILED_PRECONDITIONs name their refusal in metadata, over the wire: pay-svc reads an
/// amount mismatch from it, and nothing else as one.
async fn refusals_say_which_they_are(backend: Backend) -> anyhow::Result<()> {
    let h = Harness::start(backend).await?;
    let refusal = |status: &tonic::Status| {
        status
            .metadata()
            .get(REFUSAL_KEY)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };

    let first = h.create_order(100).await?;
    let wrong_amount = h.mark_paid(&first.id, &transaction_id(110), 99).await.err();
    assert_eq!(
        wrong_amount.as_ref().map(|s| (s.code(), refusal(s))),
        Some((
            Code::FailedPrecondition,
            Some(REFUSED_AMOUNT_MISMATCH.into())
        ))
    );

    let second = h.create_order(100).await?;
    let tx = transaction_id(111);
    h.mark_paid(&first.id, &tx, 100).await?;
    let reused = h.mark_paid(&second.id, &tx, 100).await.err();
    assert_eq!(
        reused.as_ref().map(|s| (s.code(), refusal(s))),
        Some((
            Code::FailedPrecondition,
            Some(REFUSED_TRANSACTION_REUSED.into())
        ))
    );
    assert_eq!(h.get_order(&second.id).await?, second);
    // Refused, yet recorded (transaction_reused.rs).
    let anomalies = h.anomalies(&second.id).await?;
    assert_eq!(
        anomalies
            .iter()
            .map(|a| a.kind.as_str())
            .collect::<Vec<_>>(),
        ["transaction_reused"]
    );
    Ok(())
}
