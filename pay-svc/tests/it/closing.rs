// Setup failures panic, like the assertions.
#![allow(clippy::unwrap_used)]
//! Closing unpaid orders at the end of the reconciliation window (WeChat's "closed loop",
//! SPEC §3.3), against the real order-svc and simulator: an order still NOTPAY at the closing
//! age is closed at WeChat and then in order-svc (one WeChat never heard of, here only); one
//! the buyer pays just before the close
//! ends paid, once, and is never closed; a younger one, or any with closing turned off, stays
//! open; and a payment WeChat reports refunded is counted, never marked paid nor closed.
//!
//! The closing age is set to seconds so that fresh orders reach it while the test waits.

use std::{
    net::TcpListener as StdListener,
    sync::{Arc, Mutex},
    time::Duration,
};

use paynotify::{
    proto::{
        order::v1::{
            CloseOrderRequest, CreateOrderRequest, OrderState,
            order_service_client::OrderServiceClient,
        },
        pay::v1::CreateNativePayRequest,
    },
    wxpay::xml,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::Instant,
};
use wxpay_sim::{NewOrder, SimClient, TradeState};

use crate::support::{Authed, Stack, bounded, reconciling_every_second, stack_with};

/// Reconciliation every second over every order younger than a minute, closing the unpaid
/// ones from `close_after_secs` on.
fn closing_after(close_after_secs: u64) -> impl FnOnce(&mut pay_svc::Config) {
    move |config| {
        reconciling_every_second(config);
        config.reconcile_max_age_secs = 60;
        config.reconcile_close_after_secs = Some(close_after_secs);
    }
}

/// Waits until order-svc has the order in `state`.
async fn wait_for_state(s: &mut Stack, id: &str, state: OrderState) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.order(id).await.state() != state {
        assert!(Instant::now() < deadline, "{id} never became {state:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the simulator has answered `calls` orderquery calls: several visits.
async fn wait_for_queries(s: &Stack, calls: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.orderquery_calls().await < calls {
        assert!(Instant::now() < deadline, "reconciliation did not run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An order paid (and, with `refunded`, refunded) at WeChat before order-svc had it: no
/// reconciliation run can see it unpaid in between.
async fn paid_before_seen(s: &mut Stack, id: &str, fee: i64, refunded: bool) {
    s.sim
        .create_order(&NewOrder {
            out_trade_no: id.into(),
            total_fee: fee,
            notify_url: "http://127.0.0.1:9/wxpay/notify".into(),
            body: None,
            attach: None,
        })
        .await
        .unwrap();
    s.sim.pay(id, false).await.unwrap();
    if refunded {
        s.sim.refund(id).await.unwrap();
    }
    s.orders
        .create_order(CreateOrderRequest {
            id: id.into(),
            pay_money: fee,
            username: "tester".into(),
            ..CreateOrderRequest::default()
        })
        .await
        .unwrap();
}

async fn closeorder_calls(s: &Stack) -> u64 {
    s.sim.stats().await.unwrap().closeorder_calls
}

#[tokio::test]
async fn an_order_unpaid_at_the_closing_age_is_closed_at_wechat_then_here() {
    bounded(async {
        let mut s = stack_with(closing_after(2)).await;
        let unpaid = s.create_native_order(600).await;
        // Never submitted to WeChat: nothing to close there, closed here only.
        let unsubmitted = s.create_order(700).await;

        wait_for_state(&mut s, &unpaid.id, OrderState::Closed).await;
        // Not before the closing age, measured as reconciliation measures it: from order-svc's
        // create_time (whole seconds, as is close_time).
        let closed = s.order(&unpaid.id).await;
        let time = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
        let age_at_close = time(&closed.close_time) - time(&closed.create_time);
        assert!(
            age_at_close >= chrono::Duration::seconds(2),
            "closed at age {age_at_close}: before the closing age"
        );
        // Closed at WeChat first: it can no longer be paid there.
        let at_wechat = s.sim.order(&unpaid.id).await.unwrap();
        assert_eq!(at_wechat.trade_state, TradeState::Closed);
        assert!(closeorder_calls(&s).await >= 1);
        assert!(closed.transaction_id.is_empty(), "{closed:?}");
        assert_eq!(s.logs(&unpaid.id).await.len(), 1);

        wait_for_state(&mut s, &unsubmitted.id, OrderState::Closed).await;
        assert!(s.sim.order(&unsubmitted.id).await.is_err());
        // A payment can no longer be started for it.
        let refused = s
            .pay
            .create_native_pay(CreateNativePayRequest {
                out_trade_no: unsubmitted.id.clone(),
                ..Default::default()
            })
            .await;
        assert_eq!(
            refused.map(|_| ()).unwrap_err().code(),
            tonic::Code::FailedPrecondition
        );
        // Closed orders are no longer pending: later runs change nothing.
        let calls = closeorder_calls(&s).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(closeorder_calls(&s).await, calls);
        assert_eq!(s.logs(&unpaid.id).await.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn an_order_younger_than_the_closing_age_is_not_closed() {
    bounded(async {
        let mut s = stack_with(closing_after(30)).await;
        let waiting = s.create_native_order(600).await;
        // Several runs look at it and find it NOTPAY.
        wait_for_queries(&s, 3).await;
        assert_eq!(closeorder_calls(&s).await, 0);
        assert_eq!(s.order(&waiting.id).await.state(), OrderState::Unpaid);
        let at_wechat = s.sim.order(&waiting.id).await.unwrap();
        assert_eq!(at_wechat.trade_state, TradeState::NotPay);
    })
    .await;
}

#[tokio::test]
async fn with_closing_turned_off_no_order_is_closed() {
    bounded(async {
        let mut s = stack_with(|config| {
            closing_after(1)(config);
            config.reconcile_close_unpaid = false;
        })
        .await;
        let waiting = s.create_native_order(600).await;
        wait_for_queries(&s, 3).await;
        assert_eq!(closeorder_calls(&s).await, 0);
        assert_eq!(s.order(&waiting.id).await.state(), OrderState::Unpaid);
    })
    .await;
}

#[tokio::test]
async fn an_order_paid_just_before_the_close_ends_paid_once_and_is_never_closed() {
    bounded(async {
        // pay-svc talks to WeChat through a front on which the buyer pays every order just
        // before its closeorder arrives (the notification lost): orderquery said NOTPAY,
        // closeorder answers ORDERPAID.
        let (front, front_url) = front();
        let mut sim_url = String::new();
        // Visits 3 s apart, so that a payment recorded at once after ORDERPAID was recorded by
        // the visit that tried to close, not by the next one.
        let mut s = stack_with(|config| {
            closing_after(3)(config);
            config.reconcile_interval_secs = 3;
            sim_url = std::mem::replace(&mut config.wxpay_api_base, front_url);
        })
        .await;
        let closes = paying_before_close(front, sim_url);

        let racing = s.create_native_order(900).await;
        // Paid at WeChat before reconciliation saw it at all (notification lost): orderquery
        // says SUCCESS, and it is never sent to closeorder.
        let silent = "paid-before-seen";
        paid_before_seen(&mut s, silent, 1200, false).await;

        for order in [racing.id.as_str(), silent] {
            wait_for_state(&mut s, order, OrderState::Paid).await;
        }
        let closed_at = closes.lock().unwrap().first().map(|(_, at)| *at).unwrap();
        assert!(
            closed_at.elapsed() < Duration::from_secs(2),
            "paid {:?} after the close that met ORDERPAID: by a later visit, not by that one",
            closed_at.elapsed()
        );
        let transaction_id = s
            .sim
            .order(&racing.id)
            .await
            .unwrap()
            .transaction_id
            .unwrap();
        let paid = s.order(&racing.id).await;
        assert_eq!(paid.transaction_id, transaction_id);
        assert!(paid.close_time.is_empty(), "{paid:?}");
        let silent_transaction = s.sim.order(silent).await.unwrap().transaction_id.unwrap();
        assert_eq!(s.order(silent).await.transaction_id, silent_transaction);
        let closed: Vec<String> = closes
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        assert_eq!(closed, vec![racing.id.clone()]);

        // Later runs change nothing: paid once, never closed, here or at WeChat.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for order in [racing.id.as_str(), silent] {
            assert_eq!(s.order(order).await.state(), OrderState::Paid);
            assert_eq!(s.logs(order).await.len(), 1, "{order}");
            let at_wechat = s.sim.order(order).await.unwrap();
            assert_eq!(at_wechat.trade_state, TradeState::Success);
        }
        assert_eq!(closes.lock().unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_refunded_payment_is_counted_and_left_unpaid() {
    bounded(async {
        // Even an order past the closing age: REFUND is not "unpaid at WeChat".
        let mut s = stack_with(closing_after(1)).await;
        let before = refunded_count();
        // Paid and refunded at WeChat before this system heard of the payment.
        let id = "refunded-before-seen";
        paid_before_seen(&mut s, id, 800, true).await;

        let deadline = Instant::now() + Duration::from_secs(20);
        while refunded_count() <= before {
            assert!(Instant::now() < deadline, "the refund was never counted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let order = s.order(id).await;
        assert_eq!(order.state(), OrderState::Unpaid);
        assert!(order.transaction_id.is_empty(), "{order:?}");
        assert!(s.logs(id).await.is_empty());
        assert_eq!(closeorder_calls(&s).await, 0);
        let at_wechat = s.sim.order(id).await.unwrap();
        assert_eq!(at_wechat.trade_state, TradeState::Refund);
    })
    .await;
}

/// `paysvc_reconcile_orders_total{found="refunded"}` in this process (only the test above
/// makes it grow).
fn refunded_count() -> f64 {
    let metrics = paynotify::metrics::render();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(r#"paysvc_reconcile_orders_total{found="refunded"} "#))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// A listener for a front put between pay-svc and the simulator, and its address for
/// WXPAY_API_BASE.
fn front() -> (TcpListener, String) {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (TcpListener::from_std(listener).unwrap(), url)
}

/// Serves `listener` as a front for the simulator at `sim_url`: every request is passed on,
/// but a closeorder first has the buyer pay the order at the simulator, without a
/// notification. Returns the out_trade_nos closeorder was called for.
fn paying_before_close(
    listener: TcpListener,
    sim_url: String,
) -> Arc<Mutex<Vec<(String, Instant)>>> {
    let closes = Arc::new(Mutex::new(Vec::new()));
    let seen = closes.clone();
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let sim = SimClient::new(sim_url.clone());
        while let Ok((stream, _)) = listener.accept().await {
            let (http, sim, sim_url, seen) =
                (http.clone(), sim.clone(), sim_url.clone(), seen.clone());
            tokio::spawn(async move {
                pass_on(stream, &http, &sim, &sim_url, &seen).await;
            });
        }
    });
    closes
}

/// One request on `stream`, answered and the connection closed.
async fn pass_on(
    mut stream: TcpStream,
    http: &reqwest::Client,
    sim: &SimClient,
    sim_url: &str,
    closes: &Mutex<Vec<(String, Instant)>>,
) {
    let Some((path, body)) = read_request(&mut stream).await else {
        return;
    };
    if path == "/pay/closeorder" {
        let out_trade_no = xml::parse(&body).unwrap()["out_trade_no"].clone();
        closes
            .lock()
            .unwrap()
            .push((out_trade_no.clone(), Instant::now()));
        // Already paid on a second close: WeChat answers ORDERPAID again, which is the point.
        let _ = sim.pay(&out_trade_no, false).await;
    }
    forward(stream, http, sim_url, &path, body).await;
}

/// Passes one request on to the simulator and its answer back.
async fn forward(
    mut stream: TcpStream,
    http: &reqwest::Client,
    sim_url: &str,
    path: &str,
    body: Vec<u8>,
) {
    let reply = http
        .post(format!("{sim_url}{path}"))
        .header("content-type", "text/xml; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    let body = reply.bytes().await.unwrap();
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
}

/// The path and body of one HTTP/1.1 request; `None` if the client went away first.
async fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = stream.read(&mut buffer).await.ok()?;
        if n == 0 {
            return None;
        }
        received.extend_from_slice(&buffer[..n]);
        let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&received[..end]).into_owned();
        let length = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        let body = &received[end + 4..];
        if body.len() >= length {
            let path = head.split_whitespace().nth(1)?.to_owned();
            return Some((path, body[..length].to_vec()));
        }
    }
}

/// A front for the simulator on which reconciliation's close of an order never submitted to
/// WeChat lands just as a payment is being created for it: order-svc closes the order when its
/// unifiedorder passes.
fn closing_at_unifiedorder(
    listener: TcpListener,
    sim_url: String,
    orders: OrderServiceClient<Authed>,
) {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let (http, sim_url, mut orders) = (http.clone(), sim_url.clone(), orders.clone());
            tokio::spawn(async move {
                let Some((path, body)) = read_request(&mut stream).await else {
                    return;
                };
                if path == "/pay/unifiedorder" {
                    let order_id = xml::parse(&body).unwrap()["out_trade_no"].clone();
                    orders
                        .close_order(CloseOrderRequest {
                            order_id,
                            reason: "closed by reconciliation meanwhile".into(),
                        })
                        .await
                        .unwrap();
                }
                forward(stream, &http, &sim_url, &path, body).await;
            });
        }
    });
}

#[tokio::test]
async fn a_payment_created_while_its_order_is_closed_hands_out_no_code() {
    bounded(async {
        let (front, front_url) = front();
        let mut sim_url = String::new();
        let mut s = stack_with(|config| {
            sim_url = std::mem::replace(&mut config.wxpay_api_base, front_url);
        })
        .await;
        closing_at_unifiedorder(front, sim_url, s.orders.clone());

        let order = s.create_order(600).await;
        let created = s
            .pay
            .create_native_pay(CreateNativePayRequest {
                out_trade_no: order.id.clone(),
                ..Default::default()
            })
            .await;
        let refused = created.map(|_| ()).unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::FailedPrecondition,
            "{refused:?}"
        );
        assert!(refused.message().contains("closed while"), "{refused:?}");
        assert_eq!(s.order(&order.id).await.state(), OrderState::Closed);
    })
    .await;
}
