//! Issue 4, the gateway restarted under load: WeChat (the simulator) delivers to one gateway
//! as users pay; mid-run the gateway gets SIGTERM (a deploy), drains, exits 0 and is started
//! again on the same port. Every notification either got SUCCESS or was delivered again, and
//! every payment ends recorded exactly once.

use std::{
    sync::{Arc, atomic::AtomicUsize},
    time::{Duration, Instant},
};

use cluster_tests::{Cluster, ClusterConfig, ledger::assert_no_problems, report};
use futures::{StreamExt as _, stream};
use order_svc::testing::{Backend, TestDatabase};

use crate::support::{create_orders, one_at_a_time, pay_paced, wait_for_progress, wait_until_paid};

const ORDERS: usize = 200;
const PAY_EVERY: Duration = Duration::from_millis(10);
const RESTART_AFTER_PAID: usize = ORDERS / 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restarted_under_load_loses_no_notification() {
    let _serial = one_at_a_time().await;
    let started = Instant::now();
    let database = TestDatabase::create(Backend::Sqlite).await.unwrap();
    let mut cluster = Cluster::start(
        ClusterConfig::new(database.url(), 1, 1, 1)
            .sim("SIM_TIME_SCALE", 0.001)
            .sim("SIM_REPLY_DEADLINE_MS", 5_000),
    )
    .await
    .unwrap();
    let notify_url = cluster.notify_url();
    let orders = create_orders(&cluster, ORDERS, |_| notify_url.clone()).await;
    let ids: Vec<String> = orders.iter().map(|o| o.id.clone()).collect();

    let progress = Arc::new(AtomicUsize::new(0));
    let payments = orders.iter().map(|o| (o.clone(), true)).collect();
    let payer = tokio::spawn(pay_paced(
        cluster.sim_client(),
        payments,
        PAY_EVERY,
        progress.clone(),
    ));
    wait_for_progress(&progress, RESTART_AFTER_PAID).await;
    let gateway = &mut cluster.gateways[0];
    let (status, drained_in) =
        crate::support::timed(gateway.terminate(Duration::from_secs(15))).await;
    let status = status.unwrap();
    assert!(status.success(), "gateway exited with {status}");
    let (restarted, restart_took) =
        crate::support::timed(gateway.restart(Duration::from_secs(30))).await;
    restarted.unwrap();
    let transactions = payer.await.unwrap();

    let ledger = wait_until_paid(database.url(), &ids, Duration::from_secs(60), &cluster).await;
    let sim = cluster.sim_client();
    let sim_orders: Vec<_> = stream::iter(&ids)
        .map(|id| sim.wait_for_order(id, Duration::from_secs(30), |o| o.delivered))
        .buffer_unordered(16)
        .collect()
        .await;
    let (mut failed_attempts, mut retried_orders, mut cut) = (0, 0, 0);
    for order in sim_orders {
        // `delivered`: the last attempt of its schedule got SUCCESS, whatever failed before.
        let order = order.unwrap();
        let failed: Vec<_> = order.attempts.iter().filter(|a| !a.success).collect();
        failed_attempts += failed.len();
        retried_orders += usize::from(!failed.is_empty());
        // A request that reached the gateway and got no answer (rather than a refused
        // connection while it was down): graceful shutdown should leave none.
        cut += failed
            .iter()
            .filter(|a| {
                a.http_status.is_none()
                    && !a
                        .error
                        .as_deref()
                        .unwrap_or_default()
                        .to_lowercase()
                        .contains("refused")
            })
            .count();
    }
    assert!(
        failed_attempts > 0,
        "no notification met the restart: nothing was tested"
    );
    assert_no_problems(
        "paid exactly once",
        &ledger.paid_exactly_once(&transactions),
    );
    assert_eq!(ledger.log_rows(), ORDERS);
    let stats = sim.stats().await.unwrap();
    report(format!(
        "gateway restart: {ORDERS} orders; SIGTERM after {RESTART_AFTER_PAID} payments, drained and \
         exited 0 in {drained_in:.1?}, ready again {restart_took:.1?} later; {failed_attempts} failed \
         attempts on {retried_orders} orders ({cut} without a reply other than a refused \
         connection), every order delivered again until SUCCESS; notifications sent {} acked {}; \
         total {:.1?}",
        stats.notifications_sent,
        stats.notifications_acked,
        started.elapsed()
    ));
}
