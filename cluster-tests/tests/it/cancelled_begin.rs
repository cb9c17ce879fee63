//! A bug found by the chaos run, now fixed: order-svc on PostgreSQL leaves
//! pooled connections inside an open transaction when a call is cancelled while its `BEGIN`
//! is in flight — pay-svc's deadline (`ORDER_SVC_TIMEOUT_MS`) or a gateway timeout cancels
//! the gRPC call, tonic drops the handler future, and sqlx 0.9.0's `begin()` is not
//! cancel-safe on PostgreSQL (transaction depth is raised only after the round trip, so its
//! drop guard queues no `ROLLBACK`). The next borrower's statements then run inside that
//! transaction: an autocommit write such as `CreateOrder`'s insert is not committed (and is
//! lost if the connection closes first), its locks are held, and order-svc logs
//! "there is already a transaction in progress". order-svc now runs each transaction to
//! completion on a spawned task (`to_completion`), so a cancelled call cannot drop it half-way;
//! this test guards that.

use std::time::Duration;

use cluster_tests::{Cluster, ClusterConfig, Ledger};
use futures::{StreamExt as _, stream};
use order_svc::testing::{Backend, TestDatabase};
use paynotify::proto::order::v1::{CreateOrderRequest, MarkPaidRequest};
use sea_orm::{ConnectionTrait, Database, Statement};

use crate::support::{create_orders, one_at_a_time};

const CALLS: usize = 1_000;
const ROUNDS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_calls_leave_no_connection_inside_a_transaction() {
    let _serial = one_at_a_time().await;
    let database = TestDatabase::create(Backend::Postgres).await.unwrap();
    let cluster = Cluster::start(ClusterConfig::new(database.url(), 1, 1, 1))
        .await
        .unwrap();
    let orders = create_orders(&cluster, 20, |_| cluster.notify_url()).await;
    let client = cluster.order_client(0).unwrap();

    let name = database.url().rsplit('/').next().unwrap().to_owned();
    let admin = Database::connect(Backend::Postgres.admin_url().unwrap())
        .await
        .unwrap();
    let open_transactions = || async {
        let row = admin
            .query_one_raw(Statement::from_string(
                admin.get_database_backend(),
                format!(
                    "SELECT COUNT(*) AS open FROM pg_stat_activity \
                     WHERE datname = '{name}' AND state LIKE 'idle in transaction%'"
                ),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "open").unwrap()
    };

    // Bursts of MarkPaid calls whose deadlines expire at random points of their transaction,
    // until the bug shows (it is a race: a few rounds make it all but certain).
    let (mut open, mut notices) = (0, 0);
    for round in 0..ROUNDS {
        stream::iter(0..CALLS)
            .for_each_concurrent(16, |i| {
                let mut client = client.clone();
                let order = &orders[i % orders.len()];
                async move {
                    let mut request = tonic::Request::new(MarkPaidRequest {
                        order_id: order.id.clone(),
                        transaction_id: format!("4200{:04}{:020}", round, i),
                        amount_fen: order.pay_money,
                        time_end: "20260101120000".into(),
                    });
                    request.set_timeout(Duration::from_micros(200 + (i as u64 * 37) % 3_000));
                    let _ = client.mark_paid(request).await;
                }
            })
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        open = open_transactions().await;
        notices = cluster.order_svcs[0]
            .log_text()
            .matches("there is already a transaction in progress")
            .count();
        if open > 0 || notices > 0 {
            break;
        }
    }
    admin.close().await.unwrap();

    // What it costs: orders created now, one at a time, each acknowledged by CreateOrder. Those
    // that land on such a connection are not committed, so no other session sees them.
    let mut created = Vec::new();
    for _ in 0..20 {
        let order = client
            .clone()
            .create_order(CreateOrderRequest {
                pay_money: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap();
        created.push(order.id);
    }
    let ledger = Ledger::read(database.url()).await.unwrap();
    let invisible = created
        .iter()
        .filter(|id| !ledger.orders.contains_key(*id))
        .count();
    cluster_tests::report(format!(
        "cancelled MarkPaid calls: {open} connections left in a transaction, {notices} notices, \
         {invisible} of 20 later orders uncommitted"
    ));
    assert!(
        open == 0 && notices == 0 && invisible == 0,
        "{open} order-svc connections idle inside a transaction 2 s after the last call \
         ({notices} 'already a transaction in progress' notices in its log); {invisible} of 20 \
         orders acknowledged by CreateOrder afterwards are not committed"
    );
}
