//! The behaviour suite: what `order.proto` promises, checked on one backend at a time.

use std::collections::HashMap;

use order_svc::testing::Backend;
use paynotify::proto::order::v1 as pb;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

pub use crate::multi_server::two_servers_on_one_database_pay_exactly_once;
use crate::{Harness, PAY_TIME_UTC, mark_paid, outcome, transaction_id};

pub async fn happy_path_marks_paid_once_with_pay_time_in_utc(
    backend: Backend,
) -> anyhow::Result<()> {
    let h = Harness::start(backend).await?;
    let order = h.create_order(9900).await?;
    assert_eq!(order.state(), pb::OrderState::Unpaid);
    assert_eq!(
        (order.pay_status.as_str(), order.order_status.as_str()),
        ("0", "0")
    );
    let tx = transaction_id(1);

    let response = h.mark_paid(&order.id, &tx, 9900).await?;

    assert_eq!(outcome(&response), pb::MarkPaidOutcome::MarkedPaid);
    let paid = h.get_order(&order.id).await?;
    assert_eq!(response.order.as_ref(), Some(&paid));
    assert_eq!(paid.state(), pb::OrderState::Paid);
    assert_eq!(
        (paid.pay_status.as_str(), paid.order_status.as_str()),
        ("1", "1")
    );
    assert_eq!(paid.transaction_id, tx);
    // time_end 2024-05-01 08:09:10 in Beijing is 00:09:10 UTC.
    assert_eq!(paid.pay_time, PAY_TIME_UTC);
    assert!(paid.update_time >= order.update_time);

    let logs = h.logs(&order.id).await?;
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = &logs[0];
    assert_eq!(log.operater, "system");
    assert_eq!(log.order_id, order.id);
    assert_eq!(log.remarks, format!("交易流水号：{tx}"));
    assert_eq!(log.money, 9900);
    assert_eq!(
        (
            log.order_status.as_str(),
            log.pay_status.as_str(),
            log.consign_status.as_str()
        ),
        ("1", "1", "0")
    );
    assert!(log.operate_time.ends_with('Z'), "{}", log.operate_time);
    assert!(h.anomalies(&order.id).await?.is_empty());
    Ok(())
}

pub async fn same_transaction_again_is_already_paid_and_writes_nothing(
    backend: Backend,
) -> anyhow::Result<()> {
    let h = Harness::start(backend).await?;
    let order = h.create_order(100).await?;
    let tx = transaction_id(2);
    h.mark_paid(&order.id, &tx, 100).await?;
    let paid = h.get_order(&order.id).await?;

    for _ in 0..3 {
        let again = h.mark_paid(&order.id, &tx, 100).await?;
        assert_eq!(outcome(&again), pb::MarkPaidOutcome::AlreadyPaid);
        assert_eq!(again.order.as_ref(), Some(&paid));
    }
    assert_eq!(h.get_order(&order.id).await?, paid);
    assert_eq!(h.logs(&order.id).await?.len(), 1);
    assert!(h.anomalies(&order.id).await?.is_empty());
    Ok(())
}

pub async fn concurrent_calls_with_one_transaction_pay_once(
    backend: Backend,
) -> anyhow::Result<()> {
    let h = Harness::start(backend).await?;
    let order = h.create_order(2500).await?;
    let tx = transaction_id(3);

    let calls = (0..50).map(|_| {
        let client = h.client.clone();
        let (order_id, tx) = (order.id.clone(), tx.clone());
        tokio::spawn(async move { mark_paid(&client, &order_id, &tx, 2500).await })
    });
    let mut outcomes = HashMap::new();
    for call in futures::future::join_all(calls).await {
        *outcomes.entry(outcome(&call??)).or_insert(0) += 1;
    }

    assert_eq!(
        outcomes.get(&pb::MarkPaidOutcome::MarkedPaid),
        Some(&1),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.get(&pb::MarkPaidOutcome::AlreadyPaid),
        Some(&49),
        "{outcomes:?}"
    );
    assert_eq!(h.logs(&order.id).await?.len(), 1);
    assert_eq!(h.get_order(&order.id).await?.transaction_id, tx);
    Ok(())
}

/// Many different payments at once, good and bad mixed: each call gets its own answer, only
/// the good ones change an order, and each payment of a transaction that already paid another
/// order is recorded once as an anomaly of the order it named. On SQLite they are committed in
/// groups without a savepoint per payment, and the reused transactions are recorded after their
/// group, so this is also what shows that one bad payment cannot undo or block the others.
pub async fn mixed_concurrent_payments_each_get_their_own_answer(
    backend: Backend,
) -> anyhow::Result<()> {
    let h = Harness::start(backend).await?;
    let mut orders = Vec::new();
    let mut spares = Vec::new();
    for _ in 0..30 {
        orders.push(h.create_order(300).await?.id);
        spares.push(h.create_order(300).await?.id);
    }
    let paid_before = h.create_order(300).await?.id;
    h.mark_paid(&paid_before, &transaction_id(99), 300).await?;
    // Per order: its right payment, and a payment of an order that does not exist; and on the
    // spare orders, which nothing pays: a wrong amount, or a transaction that already paid.
    let mut calls = Vec::new();
    for (i, (order_id, spare)) in orders.iter().zip(&spares).enumerate() {
        let n = u32::try_from(i)?;
        calls.push(("good", order_id.clone(), transaction_id(100 + n), 300));
        calls.push((
            "unknown",
            format!("nosuch{i}"),
            transaction_id(200 + n),
            300,
        ));
        if i % 2 == 0 {
            calls.push(("wrong_amount", spare.clone(), transaction_id(300 + n), 299));
        } else {
            calls.push(("reused", spare.clone(), transaction_id(99), 300));
        }
    }
    let answers = futures::future::join_all(calls.into_iter().map(|(kind, order_id, tx, fen)| {
        let client = h.client.clone();
        tokio::spawn(async move { (kind, mark_paid(&client, &order_id, &tx, fen).await) })
    }))
    .await;
    for answer in answers {
        let (kind, response) = answer?;
        match kind {
            "good" => assert_eq!(outcome(&response?), pb::MarkPaidOutcome::MarkedPaid),
            "unknown" => assert_eq!(response.err().map(|s| s.code()), Some(Code::NotFound)),
            _ => assert_eq!(
                response.err().map(|s| s.code()),
                Some(Code::FailedPrecondition),
                "{kind}"
            ),
        }
    }
    for (i, order_id) in orders.iter().enumerate() {
        let order = h.get_order(order_id).await?;
        assert_eq!(order.state(), pb::OrderState::Paid);
        assert_eq!(
            order.transaction_id,
            transaction_id(100 + u32::try_from(i)?)
        );
        assert_eq!(h.logs(order_id).await?.len(), 1, "{order_id}");
        assert!(h.anomalies(order_id).await?.is_empty());
    }
    for (i, spare) in spares.iter().enumerate() {
        assert_eq!(h.get_order(spare).await?.state(), pb::OrderState::Unpaid);
        let kinds: Vec<String> = h
            .anomalies(spare)
            .await?
            .into_iter()
            .map(|anomaly| anomaly.kind)
            .collect();
        let logs = h.logs(spare).await?;
        if i % 2 == 0 {
            assert!(kinds.is_empty(), "{spare}: {kinds:?}");
            assert!(logs.is_empty(), "{spare}: {logs:?}");
        } else {
            assert_eq!(kinds, ["transaction_reused"], "{spare}");
            assert_eq!(logs.len(), 1, "{spare}: {logs:?}");
        }
    }
    assert_eq!(h.logs(&paid_before).await?.len(), 1);
    assert!(h.anomalies(&paid_before).await?.is_empty());
    Ok(())
}

pub async fn two_transactions_race_one_wins_other_conflicts_once(
    backend: Backend,
) -> anyhow::Result<()> {
    let h = Harness::start(backend).await?;
    let order = h.create_order(700).await?;
    let (tx_a, tx_b) = (transaction_id(4), transaction_id(5));

    let calls = (0..40).map(|i| {
        let client = h.client.clone();
        let order_id = order.id.clone();
        let tx = if i % 2 == 0 {
            tx_a.clone()
        } else {
            tx_b.clone()
        };
        tokio::spawn(async move {
            let response = mark_paid(&client, &order_id, &tx, 700).await;
            (tx, response)
        })
    });
    let mut outcomes: HashMap<(String, pb::MarkPaidOutcome), usize> = HashMap::new();
    for call in futures::future::join_all(calls).await {
        let (tx, response) = call?;
        *outcomes.entry((tx, outcome(&response?))).or_insert(0) += 1;
    }

    let winner = h.get_order(&order.id).await?.transaction_id;
    let loser = if winner == tx_a { &tx_b } else { &tx_a };
    assert!(winner == tx_a || winner == tx_b, "{winner}");
    let count = |tx: &str, o| outcomes.get(&(tx.to_owned(), o)).copied().unwrap_or(0);
    assert_eq!(
        count(&winner, pb::MarkPaidOutcome::MarkedPaid),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        count(&winner, pb::MarkPaidOutcome::AlreadyPaid),
        19,
        "{outcomes:?}"
    );
    assert_eq!(
        count(loser, pb::MarkPaidOutcome::PaymentConflict),
        20,
        "{outcomes:?}"
    );

    let anomalies = h.anomalies(&order.id).await?;
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    assert_eq!(&anomalies[0].transaction_id, loser);
    assert_eq!(anomalies[0].kind, "paid_by_other_transaction");
    assert_eq!(anomalies[0].amount_fen, 700);
    let logs = h.logs(&order.id).await?;
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert_eq!(logs[0].remarks, format!("交易流水号：{winner}"));
    assert!(
        logs[1].remarks.contains(loser.as_str()),
        "{}",
        logs[1].remarks
    );
    assert!(
        logs[1].remarks.contains(winner.as_str()),
        "{}",
        logs[1].remarks
    );
    assert!(logs[1].remarks.chars().count() <= 100);
    Ok(())
}

pub async fn repeated_conflict_is_recorded_once(backend: Backend) -> anyhow::Result<()> {
    let h = Harness::start(backend).await?;
    let order = h.create_order(300).await?;
    let (tx_a, tx_b) = (transaction_id(6), transaction_id(7));
    h.mark_paid(&order.id, &tx_a, 300).await?;
    let paid = h.get_order(&order.id).await?;

    for _ in 0..3 {
        let conflict = h.mark_paid(&order.id, &tx_b, 300).await?;
        assert_eq!(outcome(&conflict), pb::MarkPaidOutcome::PaymentConflict);
        assert!(conflict.detail.contains(&tx_a), "{}", conflict.detail);
        // Nothing overwritten.
        assert_eq!(conflict.order.as_ref(), Some(&paid));
    }
    // A conflicting payment of another amount is still a conflict, not a precondition error.
    let other_amount = h.mark_paid(&order.id, &transaction_id(8), 1).await?;
    assert_eq!(outcome(&other_amount), pb::MarkPaidOutcome::PaymentConflict);

    assert_eq!(h.get_order(&order.id).await?, paid);
    let anomalies = h.anomalies(&order.id).await?;
    assert_eq!(anomalies.len(), 2, "{anomalies:?}");
    // One payment log, one log row per distinct anomaly.
    assert_eq!(h.logs(&order.id).await?.len(), 3);
    Ok(())
}

pub async fn amount_mismatch_changes_nothing(backend: Backend) -> anyhow::Result<()> {
    let h = Harness::start(backend).await?;
    let order = h.create_order(9900).await?;

    let status = h
        .mark_paid(&order.id, &transaction_id(9), 1)
        .await
        .err()
        .map(|s| (s.code(), s.message().to_owned()));

    let (code, message) = status.unwrap_or((Code::Ok, String::new()));
    assert_eq!(code, Code::FailedPrecondition, "{message}");
    assert!(
        message.contains("9900") && message.contains("1 fen"),
        "{message}"
    );
    assert_eq!(h.get_order(&order.id).await?, order);
    assert!(h.logs(&order.id).await?.is_empty());
    assert!(h.anomalies(&order.id).await?.is_empty());
    // The right amount still pays it afterwards.
    let paid = h.mark_paid(&order.id, &transaction_id(9), 9900).await?;
    assert_eq!(outcome(&paid), pb::MarkPaidOutcome::MarkedPaid);
    Ok(())
}

pub async fn unknown_order_is_not_found(backend: Backend) -> anyhow::Result<()> {
    let h = Harness::start(backend).await?;
    let code = |r: Result<_, tonic::Status>| r.err().map(|s| s.code());
    assert_eq!(
        code(
            h.mark_paid("no-such-order", &transaction_id(10), 100)
                .await
                .map(|_| ())
        ),
        Some(Code::NotFound)
    );
    assert_eq!(
        code(
            h.client
                .clone()
                .get_order(pb::GetOrderRequest {
                    id: "no-such-order".into()
                })
                .await
                .map(|_| ())
        ),
        Some(Code::NotFound)
    );
    assert_eq!(
        code(
            h.client
                .clone()
                .close_order(pb::CloseOrderRequest {
                    order_id: "no-such-order".into(),
                    reason: String::new(),
                })
                .await
                .map(|_| ())
        ),
        Some(Code::NotFound)
    );
    assert!(h.anomalies("no-such-order").await?.is_empty());
    Ok(())
}

pub async fn malformed_arguments_are_invalid(backend: Backend) -> anyhow::Result<()> {
    let h = Harness::start(backend).await?;
    let order = h.create_order(100).await?;
    let request = |order_id: &str, tx: &str, amount_fen, time_end: &str| pb::MarkPaidRequest {
        order_id: order_id.into(),
        transaction_id: tx.into(),
        amount_fen,
        time_end: time_end.into(),
    };
    let tx = transaction_id(11);
    let long = "1".repeat(33);
    let bad_requests = [
        request("", &tx, 100, "20240501080910"),
        request(&long, &tx, 100, "20240501080910"),
        request(&order.id, "", 100, "20240501080910"),
        request(&order.id, &long, 100, "20240501080910"),
        request(&order.id, &tx, 0, "20240501080910"),
        request(&order.id, &tx, -100, "20240501080910"),
        request(&order.id, &tx, 100, ""),
        request(&order.id, &tx, 100, "2024-05-01 08:09"),
        request(&order.id, &tx, 100, "202405010809101"),
        request(&order.id, &tx, 100, "20240230080910"),
        request(&order.id, &tx, 100, "20240501250910"),
    ];
    for bad in bad_requests {
        let result = h.client.clone().mark_paid(bad.clone()).await;
        assert_eq!(
            result.err().map(|s| s.code()),
            Some(Code::InvalidArgument),
            "{bad:?}"
        );
    }
    let bad_creates = [
        pb::CreateOrderRequest {
            pay_money: 0,
            ..Default::default()
        },
        pb::CreateOrderRequest {
            id: "has space".into(),
            pay_money: 1,
            ..Default::default()
        },
        pb::CreateOrderRequest {
            id: long.clone(),
            pay_money: 1,
            ..Default::default()
        },
    ];
    for bad in bad_creates {
        let result = h.client.clone().create_order(bad.clone()).await;
        assert_eq!(
            result.err().map(|s| s.code()),
            Some(Code::InvalidArgument),
            "{bad:?}"
        );
    }
    let pending = h
        .client
        .clone()
        .list_pending_orders(pb::ListPendingOrdersRequest {
            min_age_seconds: -1,
            ..Default::default()
        })
        .await;
    assert_eq!(pending.err().map(|s| s.code()), Some(Code::InvalidArgument));
    // Nothing was touched by any of them.
    assert_eq!(h.get_order(&order.id).await?, order);
    assert!(h.logs(&order.id).await?.is_empty());
    Ok(())
}

pub async fn payment_of_a_closed_order_conflicts(backend: Backend) -> anyhow::Result<()> {
    let h = Harness::start(backend).await?;
    let order = h.create_order(4200).await?;
    let closed = h
        .client
        .clone()
        .close_order(pb::CloseOrderRequest {
            order_id: order.id.clone(),
            reason: "wechat trade_state CLOSED".into(),
        })
        .await?
        .into_inner();
    assert_eq!(closed.outcome(), pb::CloseOrderOutcome::Closed);
    let closed = h.get_order(&order.id).await?;

    for _ in 0..2 {
        let response = h.mark_paid(&order.id, &transaction_id(12), 4200).await?;
        assert_eq!(outcome(&response), pb::MarkPaidOutcome::PaymentConflict);
        assert!(response.detail.contains("closed"), "{}", response.detail);
    }

    assert_eq!(h.get_order(&order.id).await?, closed);
    let anomalies = h.anomalies(&order.id).await?;
    assert_eq!(anomalies.len(), 1);
    assert_eq!(anomalies[0].kind, "paid_after_close");
    let logs = h.logs(&order.id).await?;
    assert_eq!(logs.len(), 2, "close + anomaly: {logs:?}");
    assert_eq!(
        (logs[1].order_status.as_str(), logs[1].pay_status.as_str()),
        ("2", "0")
    );
    assert_eq!(logs[1].money, 4200);
    Ok(())
}

pub async fn close_order_is_idempotent_and_never_closes_paid_orders(
    backend: Backend,
) -> anyhow::Result<()> {
    let h = Harness::start(backend).await?;
    let close = |order_id: &str| {
        let mut client = h.client.clone();
        let order_id = order_id.to_owned();
        async move {
            client
                .close_order(pb::CloseOrderRequest {
                    order_id,
                    reason: "wechat trade_state REVOKED".into(),
                })
                .await
                .map(tonic::Response::into_inner)
        }
    };

    let unpaid = h.create_order(500).await?;
    let first = close(&unpaid.id).await?;
    assert_eq!(first.outcome(), pb::CloseOrderOutcome::Closed);
    let closed = first.order.unwrap_or_default();
    assert_eq!(closed.state(), pb::OrderState::Closed);
    assert_eq!(
        (closed.pay_status.as_str(), closed.order_status.as_str()),
        ("0", "2")
    );
    assert!(!closed.close_time.is_empty());
    let again = close(&unpaid.id).await?;
    assert_eq!(again.outcome(), pb::CloseOrderOutcome::AlreadyClosed);
    assert_eq!(again.order.as_ref(), Some(&closed));
    let logs = h.logs(&unpaid.id).await?;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].remarks, "wechat trade_state REVOKED");
    assert_eq!(
        (logs[0].order_status.as_str(), logs[0].pay_status.as_str()),
        ("2", "0")
    );

    let paid = h.create_order(600).await?;
    h.mark_paid(&paid.id, &transaction_id(13), 600).await?;
    let paid = h.get_order(&paid.id).await?;
    let refused = close(&paid.id).await?;
    assert_eq!(refused.outcome(), pb::CloseOrderOutcome::AlreadyPaid);
    assert_eq!(h.get_order(&paid.id).await?, paid);
    assert_eq!(h.logs(&paid.id).await?.len(), 1);

    // Closing and paying at once: exactly one of them happens.
    let raced = h.create_order(800).await?;
    let raced_tx = transaction_id(14);
    let (closing, paying) = tokio::join!(close(&raced.id), h.mark_paid(&raced.id, &raced_tx, 800));
    let (closing, paying) = (closing?.outcome(), outcome(&paying?));
    let state = h.get_order(&raced.id).await?.state();
    match state {
        pb::OrderState::Closed => {
            assert_eq!(closing, pb::CloseOrderOutcome::Closed);
            assert_eq!(paying, pb::MarkPaidOutcome::PaymentConflict);
        }
        _ => {
            assert_eq!(state, pb::OrderState::Paid);
            assert_eq!(closing, pb::CloseOrderOutcome::AlreadyPaid);
            assert_eq!(paying, pb::MarkPaidOutcome::MarkedPaid);
        }
    }
    Ok(())
}

pub async fn pending_orders_are_filtered_by_age_oldest_first(
    backend: Backend,
) -> anyhow::Result<()> {
    let h = Harness::start(backend).await?;
    let two_hours = h.create_order(100).await?;
    let ten_minutes = h.create_order(100).await?;
    let fresh = h.create_order(100).await?;
    let paid_old = h.create_order(100).await?;
    let closed_old = h.create_order(100).await?;
    h.age_order(&two_hours.id, 2 * 3600).await?;
    h.age_order(&ten_minutes.id, 600).await?;
    h.age_order(&paid_old.id, 3 * 3600).await?;
    h.age_order(&closed_old.id, 3 * 3600).await?;
    h.mark_paid(&paid_old.id, &transaction_id(15), 100).await?;
    h.client
        .clone()
        .close_order(pb::CloseOrderRequest {
            order_id: closed_old.id.clone(),
            reason: String::new(),
        })
        .await?;

    let pending = |min_age_seconds, max_age_seconds, limit| {
        let mut client = h.client.clone();
        async move {
            let response = client
                .list_pending_orders(pb::ListPendingOrdersRequest {
                    min_age_seconds,
                    max_age_seconds,
                    limit,
                    ..Default::default()
                })
                .await?;
            let ids: Vec<String> = response
                .into_inner()
                .orders
                .into_iter()
                .map(|o| o.id)
                .collect();
            anyhow::Ok(ids)
        }
    };

    assert_eq!(
        pending(0, 0, 0).await?,
        [two_hours.id.as_str(), &ten_minutes.id, &fresh.id]
    );
    assert_eq!(
        pending(300, 0, 0).await?,
        [two_hours.id.as_str(), &ten_minutes.id]
    );
    assert_eq!(pending(300, 3600, 0).await?, [ten_minutes.id.as_str()]);
    assert_eq!(pending(3 * 3600, 0, 0).await?, Vec::<String>::new());
    assert_eq!(pending(0, 0, 1).await?, [two_hours.id.as_str()]);
    Ok(())
}

/// Reconciliation walks the pending orders page by page: every pending order comes exactly
/// once, in order, however many share a creation second, and the walk ends with an empty token.
pub async fn pending_orders_are_walked_a_page_at_a_time(backend: Backend) -> anyhow::Result<()> {
    let h = Harness::start(backend).await?;
    let mut expected = Vec::new();
    for _ in 0..7 {
        expected.push(h.create_order(100).await?.id);
    }
    // Two older orders, and most of the rest created within the same second.
    h.age_order(&expected[0], 7200).await?;
    h.age_order(&expected[1], 3600).await?;
    // One paid while the walk is under way is simply not listed.
    let paid_midway = expected.pop().unwrap_or_default();

    let mut client = h.client.clone();
    let mut walked = Vec::new();
    let mut token = String::new();
    for page in 0.. {
        assert!(page < 10, "the walk never ends: {walked:?}");
        let response = client
            .list_pending_orders(pb::ListPendingOrdersRequest {
                limit: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(response.orders.len() <= 2);
        walked.extend(response.orders.into_iter().map(|o| o.id));
        if page == 0 {
            h.mark_paid(&paid_midway, &transaction_id(16), 100).await?;
        }
        token = response.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    // Orders created in the same second come in id order.
    let mut same_second = expected.split_off(2);
    same_second.sort();
    expected.extend(same_second);
    assert_eq!(walked, expected);

    let bad = client
        .list_pending_orders(pb::ListPendingOrdersRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(bad.err().map(|s| s.code()), Some(Code::InvalidArgument));
    Ok(())
}

pub async fn create_order_ids_and_defaults(backend: Backend) -> anyhow::Result<()> {
    let h = Harness::start(backend).await?;
    let generated = h.create_order(1999).await?;
    assert_eq!(generated.id.len(), 19, "{}", generated.id);
    assert!(generated.id.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!((generated.total_money, generated.total_num), (1999, 1));
    assert!(generated.create_time.ends_with('Z'));
    assert_eq!(generated.transaction_id, "");
    assert_eq!(generated.pay_time, "");

    let mut client = h.client.clone();
    let named = pb::CreateOrderRequest {
        id: "Ord_2024-05|01*x@y".into(),
        pay_money: 500,
        total_money: 800,
        total_num: 3,
        username: "alice".into(),
    };
    let created = client
        .create_order(named.clone())
        .await?
        .into_inner()
        .order
        .unwrap_or_default();
    assert_eq!(created.id, named.id);
    assert_eq!(
        (created.pay_money, created.total_money, created.total_num),
        (500, 800, 3)
    );
    assert_eq!(created.username, "alice");
    assert_eq!(h.get_order(&named.id).await?, created);

    let duplicate = client.create_order(named.clone()).await;
    assert_eq!(duplicate.err().map(|s| s.code()), Some(Code::AlreadyExists));

    // Ids are case-sensitive on every backend (MySQL collations are not, by default).
    let other_case = pb::CreateOrderRequest {
        id: named.id.to_lowercase(),
        ..named
    };
    let lower = client.create_order(other_case).await?.into_inner().order;
    assert_eq!(lower.map(|o| o.id), Some("ord_2024-05|01*x@y".to_owned()));
    assert_eq!(h.get_order("Ord_2024-05|01*x@y").await?.pay_money, 500);
    Ok(())
}

pub async fn transaction_paying_two_orders_is_refused(backend: Backend) -> anyhow::Result<()> {
    let h = Harness::start(backend).await?;
    let first = h.create_order(100).await?;
    let second = h.create_order(100).await?;
    let tx = transaction_id(16);
    h.mark_paid(&first.id, &tx, 100).await?;

    let reused = h.mark_paid(&second.id, &tx, 100).await;

    assert_eq!(
        reused.err().map(|s| s.code()),
        Some(Code::FailedPrecondition)
    );
    assert_eq!(h.get_order(&second.id).await?, second);
    // Recorded for a person (transaction_reused.rs), the order left as it is.
    assert_eq!(h.logs(&second.id).await?.len(), 1);
    assert_eq!(h.anomalies(&second.id).await?.len(), 1);
    Ok(())
}

pub async fn health_reports_serving(backend: Backend) -> anyhow::Result<()> {
    let h = Harness::start(backend).await?;
    let channel = tonic::transport::Endpoint::from_shared(h.server.endpoint())?
        .connect()
        .await?;
    let mut health = HealthClient::new(channel);
    for service in ["", "order.v1.OrderService"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service:?}");
    }
    h.server.stop().await?;
    Ok(())
}
