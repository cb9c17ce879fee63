//! What the suites share: one cluster at a time, orders created in order-svc and placed in
//! the simulator, payments, signed notifications, posting them, and waiting for the database.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use cluster_tests::{Cluster, Ledger};
use futures::{StreamExt as _, TryStreamExt as _, stream};
use paynotify::{
    proto::order::v1::{CreateOrderRequest, Order},
    wxpay::{reply::SUCCESS_ACK, sign::SignType},
};
use tokio::sync::{Mutex, MutexGuard};
use wxpay_sim::{DEMO_API_KEY, DEMO_APPID, DEMO_MCH_ID, NewOrder, Notification, SimClient};

/// How many control / gRPC calls of the set-up run at once.
const SETUP_CONCURRENCY: usize = 16;

/// One cluster at a time: several would starve each other of the two cores and turn timing
/// into flakiness.
pub async fn one_at_a_time() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::const_new(());
    SERIAL.lock().await
}

/// An order as the test knows it: order-svc's id and amount.
#[derive(Clone, Debug)]
pub struct TestOrder {
    pub id: String,
    pub pay_money: i64,
}

/// Creates `count` unpaid orders through order-svc (spread over its replicas, amounts
/// varying) and places each in the simulator with `notify_url(index)`, as unifiedorder would.
pub async fn create_orders(
    cluster: &Cluster,
    count: usize,
    notify_url: impl Fn(usize) -> String,
) -> Vec<TestOrder> {
    let clients: Vec<_> = (0..cluster.order_svcs.len())
        .map(|i| cluster.order_client(i).unwrap())
        .collect();
    let sim = cluster.sim_client();
    let requests: Vec<_> = (0..count)
        .map(|i| {
            let mut client = clients[i % clients.len()].clone();
            let sim = sim.clone();
            let notify_url = notify_url(i);
            async move {
                let order: Order = client
                    .create_order(CreateOrderRequest {
                        pay_money: 100 + (i as i64 % 9_900),
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .order
                    .ok_or_else(|| anyhow::anyhow!("CreateOrder returned no order"))?;
                sim.create_order(&NewOrder {
                    out_trade_no: order.id.clone(),
                    total_fee: order.pay_money,
                    notify_url,
                    body: None,
                    attach: None,
                })
                .await?;
                anyhow::Ok(TestOrder {
                    id: order.id,
                    pay_money: order.pay_money,
                })
            }
        })
        .collect();
    stream::iter(requests)
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await
        .unwrap()
}

/// The user pays `order` in the simulator; with `notify`, WeChat starts delivering. Returns
/// WeChat's transaction_id.
pub async fn pay(sim: &SimClient, order: &TestOrder, notify: bool) -> String {
    let paid = sim.pay(&order.id, notify).await.unwrap();
    assert_eq!(paid.total_fee, order.pay_money);
    paid.transaction_id
}

/// Pays one order per `every`, each with notifications on or off as given, counting in
/// `progress`, so payments (and WeChat's notifications) keep flowing while a test kills or
/// restarts something. Returns id → transaction_id.
pub async fn pay_paced(
    sim: SimClient,
    payments: Vec<(TestOrder, bool)>,
    every: Duration,
    progress: Arc<AtomicUsize>,
) -> HashMap<String, String> {
    let mut tick = tokio::time::interval(every);
    let mut transactions = HashMap::new();
    for (order, notify) in &payments {
        tick.tick().await;
        transactions.insert(order.id.clone(), pay(&sim, order, *notify).await);
        progress.fetch_add(1, Ordering::Relaxed);
    }
    transactions
}

/// Waits until `progress` reaches `count`.
pub async fn wait_for_progress(progress: &AtomicUsize, count: usize) {
    while progress.load(Ordering::Relaxed) < count {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Pays every order without notifying; returns id → transaction_id.
pub async fn pay_all_silently(sim: &SimClient, orders: &[TestOrder]) -> HashMap<String, String> {
    stream::iter(orders)
        .map(|order| async move { (order.id.clone(), pay(sim, order, false).await) })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await
}

/// The notification WeChat sends for a paid order, signed with the demo key.
pub fn notification_xml(order: &TestOrder, transaction_id: &str) -> String {
    let mut notification = Notification::paid(DEMO_APPID, DEMO_MCH_ID, &order.id, order.pay_money);
    notification.transaction_id = transaction_id.to_owned();
    wxpay_sim::signed_notification(&notification, DEMO_API_KEY, SignType::Md5)
}

/// An HTTP client like WeChat's: no proxy, WeChat's 5 s reply deadline (doubled: this is a
/// loaded test machine), a pool of keep-alive connections.
pub fn wechat_http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Posts a notification; the HTTP status and the reply body, or the transport error.
pub async fn post_notification(
    http: &reqwest::Client,
    url: &str,
    xml: String,
) -> Result<(u16, String), String> {
    let response = http
        .post(url)
        .header("content-type", "text/xml")
        .body(xml)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| format!("{e:?}"))?;
    Ok((status, body))
}

/// Whether a reply is exactly WeChat's SUCCESS ack with HTTP 200.
pub fn is_success(reply: &Result<(u16, String), String>) -> bool {
    matches!(reply, Ok((200, body)) if body == SUCCESS_ACK)
}

/// Polls the database until every one of `ids` is paid, for at most `within`; returns the
/// last ledger read, and panics naming how many are still unpaid.
pub async fn wait_until_paid(
    database_url: &str,
    ids: &[String],
    within: Duration,
    cluster: &Cluster,
) -> Ledger {
    let started = Instant::now();
    loop {
        let ledger = Ledger::read(database_url).await.unwrap();
        let paid = ledger.paid_count(ids);
        if paid == ids.len() {
            return ledger;
        }
        if started.elapsed() > within {
            let stats = cluster.sim_client().stats().await;
            panic!(
                "only {paid} of {} orders paid after {within:?}; simulator: {stats:?}",
                ids.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs `work` and returns its output with how long it took.
pub async fn timed<T>(work: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let output = work.await;
    (output, started.elapsed())
}
