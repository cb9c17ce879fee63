//! Issue 3, replicas: two gateways, two pay-svc and two order-svc processes over one
//! database; 500 orders, each notified 5 times at once, the copies spread over both gateways
//! → every reply SUCCESS, every order paid exactly once with exactly one paid log row.

use std::time::Instant;

use cluster_tests::{Cluster, ClusterConfig, Ledger, ledger::assert_no_problems, report};
use futures::{StreamExt as _, stream};
use order_svc::testing::{Backend, TestDatabase};

use crate::support::{
    create_orders, is_success, notification_xml, one_at_a_time, pay_all_silently,
    post_notification, timed, wechat_http,
};

const ORDERS: usize = 500;
const COPIES: usize = 5;
/// Notifications posted at once (the copies of one order are adjacent, so they race).
const IN_FLIGHT: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_every_service_on_postgres_pay_each_order_exactly_once() {
    run(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_every_service_on_mariadb_pay_each_order_exactly_once() {
    run(Backend::Mysql).await;
}

async fn run(backend: Backend) {
    let _serial = one_at_a_time().await;
    let started = Instant::now();
    let database = TestDatabase::create(backend).await.unwrap();
    let cluster = Cluster::start(ClusterConfig::new(database.url(), 2, 2, 2))
        .await
        .unwrap();
    let orders = create_orders(&cluster, ORDERS, |i| cluster.gateway_notify_url(i % 2)).await;
    let sim = cluster.sim_client();
    let paid = pay_all_silently(&sim, &orders).await;
    let setup = started.elapsed();

    let http = wechat_http();
    let urls = [cluster.gateway_notify_url(0), cluster.gateway_notify_url(1)];
    let deliveries = orders.iter().enumerate().flat_map(|(i, order)| {
        let xml = notification_xml(order, &paid[&order.id]);
        (0..COPIES).map(move |copy| (order.id.clone(), (i + copy) % 2, xml.clone()))
    });
    let (replies, posting) = timed(
        stream::iter(deliveries)
            .map(|(id, gateway, xml)| {
                let (http, url) = (&http, &urls[gateway]);
                async move { (id, gateway, post_notification(http, url, xml).await) }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<_>>(),
    )
    .await;

    let not_success: Vec<_> = replies.iter().filter(|(_, _, r)| !is_success(r)).collect();
    assert!(
        not_success.is_empty(),
        "{} of {} replies were not SUCCESS, e.g. {:?}",
        not_success.len(),
        replies.len(),
        &not_success[..not_success.len().min(5)]
    );
    let per_gateway = [0, 1].map(|g| replies.iter().filter(|(_, gw, _)| *gw == g).count());
    assert_eq!(replies.len(), ORDERS * COPIES);

    let ledger = Ledger::read(database.url()).await.unwrap();
    assert_no_problems("paid exactly once", &ledger.paid_exactly_once(&paid));
    assert_eq!(ledger.log_rows(), ORDERS, "one log row per order, no more");

    // Both replicas of pay-svc decided payments, and both of order-svc served calls.
    let decided: Vec<usize> = cluster
        .pay_svcs
        .iter()
        .map(|p| p.log_text().matches("payment claim decided").count())
        .collect();
    assert!(
        decided.iter().all(|&n| n > 0),
        "pay-svc verdicts per replica: {decided:?}"
    );
    // For the report only: how the winning MarkPaid calls fell on the order-svc replicas.
    let marked: Vec<usize> = cluster
        .order_svcs
        .iter()
        .map(|p| p.log_text().matches("order marked paid").count())
        .collect();
    let stats = sim.stats().await.unwrap();
    assert!(
        stats.orderquery_calls <= (ORDERS * COPIES) as u64,
        "{stats:?}"
    );
    report(format!(
        "replicas on {backend:?}: {ORDERS} orders × {COPIES} notifications = {} replies, all SUCCESS \
         (per gateway {per_gateway:?}; pay-svc verdicts per replica {decided:?}); orderquery calls {}; \
         order-svc MarkPaid wins per replica {marked:?}; set-up {setup:.1?}, posting {posting:.1?} \
         ({:.0}/s), total {:.1?}",
        replies.len(),
        stats.orderquery_calls,
        replies.len() as f64 / posting.as_secs_f64(),
        started.elapsed(),
    ));
}
