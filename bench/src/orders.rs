//! Getting orders ready for a run: created in order-svc over gRPC (CreateOrder, as a shop
//! would), placed and paid in the simulator without notifying, and their notifications signed
//! as WeChat would send them. Also the direct MarkPaid requests of the database floor.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use anyhow::Context;
use bytes::Bytes;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt, stream};
use paynotify::{
    proto::order::v1::{CreateOrderRequest, MarkPaidRequest},
    wxpay::{sign::SignType, time::format_time_end},
};
use wxpay_sim::{
    DEMO_API_KEY, DEMO_APPID, DEMO_MCH_ID, NewOrder, Notification, signed_notification,
};

use crate::stack::{OrderClient, Stack};

/// An order WeChat (the simulator) has recorded as paid, with the notification it would send.
#[derive(Clone, Debug)]
pub struct PaidOrder {
    pub id: String,
    pub transaction_id: String,
    pub total_fee: i64,
}

/// Orders paid in the simulator and the notification body of each, index for index.
pub struct Batch {
    pub orders: Vec<PaidOrder>,
    pub bodies: Arc<Vec<Bytes>>,
}

/// An amount between 1 and 100,000 fen that differs from order to order.
fn amount(index: usize) -> i64 {
    1 + (index as i64 * 7919) % 100_000
}

/// Creates `count` unpaid orders through CreateOrder; returns (id, pay_money) of each.
pub async fn create(
    client: &OrderClient,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<(String, i64)>> {
    stream::iter(0..count)
        .map(|index| {
            let mut client = client.clone();
            async move {
                let pay_money = amount(index);
                let order = client
                    .create_order(CreateOrderRequest {
                        pay_money,
                        username: "bench".into(),
                        ..Default::default()
                    })
                    .await
                    .context("CreateOrder")?
                    .into_inner()
                    .order
                    .context("CreateOrder returned no order")?;
                anyhow::Ok((order.id, pay_money))
            }
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await
}

/// Creates `count` orders, places each in the simulator with the gateway as notify_url, pays
/// it there without notifying, and signs the notification WeChat would send.
pub async fn paid_batch(
    stack: &Stack,
    count: usize,
    concurrency: usize,
    sign_type: SignType,
) -> anyhow::Result<Batch> {
    let created = create(&stack.order_client, count, concurrency).await?;
    let notify_url = stack.notify_url();
    let sim = &stack.sim_client;
    let orders: Vec<PaidOrder> = stream::iter(created)
        .map(|(id, total_fee)| {
            let notify_url = notify_url.clone();
            async move {
                sim.create_order(&NewOrder {
                    out_trade_no: id.clone(),
                    total_fee,
                    notify_url,
                    body: None,
                    attach: None,
                })
                .await
                .context("the simulator's POST /sim/orders")?;
                let paid = sim
                    .pay(&id, false)
                    .await
                    .context("the simulator's POST /sim/pay")?;
                anyhow::Ok(PaidOrder {
                    id,
                    transaction_id: paid.transaction_id,
                    total_fee: paid.total_fee,
                })
            }
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await?;
    let bodies = orders
        .iter()
        .map(|order| Bytes::from(notification(order, sign_type)))
        .collect();
    Ok(Batch {
        orders,
        bodies: Arc::new(bodies),
    })
}

/// The signed notification WeChat sends for a paid order (every field a real one carries).
pub fn notification(order: &PaidOrder, sign_type: SignType) -> String {
    let mut notification = Notification::paid(DEMO_APPID, DEMO_MCH_ID, &order.id, order.total_fee);
    notification.transaction_id = order.transaction_id.clone();
    signed_notification(&notification, DEMO_API_KEY, sign_type)
}

/// Process-unique transaction ids for payments that never went through the simulator (the
/// MarkPaid floor, seeded history): `4100` + 24 digits, so they can never equal the
/// simulator's `4200…` ids.
pub struct TransactionIds {
    prefix: u64,
    next: AtomicU64,
}

impl TransactionIds {
    pub fn new() -> Self {
        TransactionIds {
            prefix: rand::random::<u64>() % 100_000_000,
            next: AtomicU64::new(0),
        }
    }

    pub fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("4100{:08}{:016}", self.prefix, n)
    }
}

impl Default for TransactionIds {
    fn default() -> Self {
        TransactionIds::new()
    }
}

/// Unpaid orders and the MarkPaid request that pays each, as pay-svc would send it.
pub async fn mark_paid_requests(
    client: &OrderClient,
    count: usize,
    concurrency: usize,
    ids: &TransactionIds,
) -> anyhow::Result<Vec<MarkPaidRequest>> {
    let time_end = format_time_end(Utc::now());
    Ok(create(client, count, concurrency)
        .await?
        .into_iter()
        .map(|(order_id, amount_fen)| MarkPaidRequest {
            order_id,
            transaction_id: ids.next(),
            amount_fen,
            time_end: time_end.clone(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use paynotify::wxpay::{sign::verify, xml::parse};

    #[test]
    fn amounts_are_positive_fen_under_a_thousand_yuan() {
        assert!((0..100_000).map(amount).all(|a| (1..=100_000).contains(&a)));
    }

    #[test]
    fn notifications_verify_and_carry_the_payment() {
        let order = PaidOrder {
            id: "1234567890123456789".into(),
            transaction_id: "4200001234202401011234567890".into(),
            total_fee: 1999,
        };
        for sign_type in [SignType::Md5, SignType::HmacSha256] {
            let fields = parse(notification(&order, sign_type).as_bytes()).unwrap();
            assert_eq!(verify(&fields, DEMO_API_KEY), Ok(sign_type));
            assert_eq!(fields["out_trade_no"], order.id);
            assert_eq!(fields["transaction_id"], order.transaction_id);
            assert_eq!(fields["total_fee"], "1999");
        }
    }

    #[test]
    fn transaction_ids_are_unique_and_wechat_sized() {
        let ids = TransactionIds::new();
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert_eq!(a.len(), 28);
        assert!(a.starts_with("4100") && a.bytes().all(|c| c.is_ascii_digit()));
    }
}
