//! Reconciliation under a backlog: once more than a batch of orders are never paid (abandoned
//! checkouts, the common case in a shop), a newer paid order whose notification never arrived
//! must still be reached. Reconciliation walks the pending orders a page at a time, so it gets
//! there after `ceil(backlog / batch)` runs; always taking the oldest batch never would.

use std::time::Duration;

use cluster_tests::{Cluster, ClusterConfig, Ledger};
use order_svc::testing::{Backend, TestDatabase};

use crate::support::{create_orders, one_at_a_time, pay};

const BATCH: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_unpaid_orders_does_not_starve_reconciliation() {
    let _serial = one_at_a_time().await;
    let database = TestDatabase::create(Backend::Sqlite).await.unwrap();
    let cluster = Cluster::start(
        ClusterConfig::new(database.url(), 1, 1, 1)
            .pay_svc("RECONCILE_INTERVAL_SECS", 1)
            .pay_svc("RECONCILE_MIN_AGE_SECS", 1)
            .pay_svc("RECONCILE_BATCH", BATCH)
            .pay_svc("RECONCILE_QUERIES_PER_SEC", 100),
    )
    .await
    .unwrap();
    let notify_url = cluster.notify_url();
    // Three batches worth of abandoned orders, older than the payment.
    create_orders(&cluster, 3 * BATCH, |_| notify_url.clone()).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let paid = create_orders(&cluster, 1, |_| notify_url.clone()).await;
    pay(&cluster.sim_client(), &paid[0], false).await;

    // Ten reconciliation runs.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let ledger = Ledger::read(database.url()).await.unwrap();
    assert!(
        ledger.is_paid(&paid[0].id),
        "a payment WeChat confirmed is still unrecorded after 10 reconciliation runs"
    );
}
