//! Issue 4, graceful shutdown of the real binaries: SIGTERM when idle → exit 0 within a few
//! seconds; SIGTERM to the gateway or pay-svc while a notification is in flight (WeChat's
//! orderquery made slow) → that request still gets its SUCCESS and the process exits 0.

use std::time::{Duration, Instant};

use cluster_tests::{Cluster, ClusterConfig, Ledger, ledger::assert_no_problems, report};
use order_svc::testing::{Backend, TestDatabase};

use crate::support::{
    create_orders, is_success, notification_xml, one_at_a_time, pay_all_silently,
    post_notification, wechat_http,
};

/// An idle service has nothing to drain.
const IDLE_EXIT_WITHIN: Duration = Duration::from_secs(5);
/// The simulator's orderquery latency: how long a notification stays in flight.
const ORDERQUERY_LATENCY_MS: u64 = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_exits_0_on_sigterm_when_idle() {
    let _serial = one_at_a_time().await;
    let database = TestDatabase::create(Backend::Sqlite).await.unwrap();
    let mut cluster = Cluster::start(ClusterConfig::new(database.url(), 1, 1, 1))
        .await
        .unwrap();
    let mut times = Vec::new();
    for process in [
        &mut cluster.gateways[0],
        &mut cluster.pay_svcs[0],
        &mut cluster.order_svcs[0],
        &mut cluster.sim,
    ] {
        let started = Instant::now();
        let status = process.terminate(IDLE_EXIT_WITHIN).await.unwrap();
        assert!(status.success(), "{} exited with {status}", process.name());
        times.push(format!(
            "{} {} ms",
            process.name(),
            started.elapsed().as_millis()
        ));
    }
    report(format!("idle SIGTERM → exit 0: {}", times.join(", ")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_notification_in_flight_finish() {
    let _serial = one_at_a_time().await;
    let database = TestDatabase::create(Backend::Sqlite).await.unwrap();
    let mut cluster = Cluster::start(
        ClusterConfig::new(database.url(), 1, 1, 1)
            .sim("SIM_ORDERQUERY_LATENCY_MS", ORDERQUERY_LATENCY_MS),
    )
    .await
    .unwrap();
    let notify_url = cluster.notify_url();
    let orders = create_orders(&cluster, 2, |_| notify_url.clone()).await;
    let sim = cluster.sim_client();
    let paid = pay_all_silently(&sim, &orders).await;
    let http = wechat_http();
    let mut report_lines = Vec::new();

    for (index, order) in orders.iter().enumerate() {
        let stopping_gateway = index == 0;
        let in_flight = tokio::spawn({
            let (http, url) = (http.clone(), notify_url.clone());
            let xml = notification_xml(order, &paid[&order.id]);
            async move { post_notification(&http, &url, xml).await }
        });
        // In flight for sure: pay-svc is waiting for WeChat's (slow) orderquery answer.
        let queries_before = index as u64;
        let deadline = Instant::now() + Duration::from_secs(10);
        while sim.stats().await.unwrap().orderquery_calls <= queries_before {
            assert!(
                Instant::now() < deadline,
                "the notification never reached orderquery"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let process = if stopping_gateway {
            &mut cluster.gateways[0]
        } else {
            &mut cluster.pay_svcs[0]
        };
        let signalled = Instant::now();
        process.signal_term().unwrap();
        if stopping_gateway {
            // Draining: no new connection is accepted while the old request finishes.
            let addr = process.addr();
            let refused_by = Instant::now() + Duration::from_millis(500);
            while tokio::net::TcpStream::connect(addr).await.is_ok() {
                assert!(
                    Instant::now() < refused_by,
                    "the draining gateway still accepts connections"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(
                !in_flight.is_finished(),
                "the request ended before the check"
            );
        }
        let reply = in_flight.await.unwrap();
        let answered_after = signalled.elapsed();
        assert!(is_success(&reply), "{}: {reply:?}", process.name());
        let status = process.wait_exit(Duration::from_secs(10)).await.unwrap();
        let exited_after = signalled.elapsed();
        assert!(status.success(), "{} exited with {status}", process.name());
        report_lines.push(format!(
            "{}: in-flight reply SUCCESS {} ms after SIGTERM, exit 0 after {} ms",
            process.name(),
            answered_after.as_millis(),
            exited_after.as_millis()
        ));
        if stopping_gateway {
            cluster.gateways[0]
                .restart(Duration::from_secs(30))
                .await
                .unwrap();
        }
    }

    let ledger = Ledger::read(database.url()).await.unwrap();
    assert_no_problems("paid exactly once", &ledger.paid_exactly_once(&paid));
    report(format!(
        "SIGTERM with a request in flight (orderquery latency {ORDERQUERY_LATENCY_MS} ms): {}",
        report_lines.join("; ")
    ));
}
