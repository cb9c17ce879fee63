//! Fault injection over real sockets: a failing orderquery, lost, duplicated and reordered
//! notifications; set at start and at run time.

use std::time::{Duration, Instant};

use paynotify::wxpay::{
    sign::{SignType, verify},
    xml,
};
use wxpay_sim::{Config, FailMode, Faults};

use crate::support::{KEY, Receiver, Reply, Sim, fast_config, merchant_fields, with};

const WAIT: Duration = Duration::from_secs(5);

fn failing_orderquery(mode: FailMode) -> Faults {
    Faults {
        orderquery_fail_ratio: 1.0,
        orderquery_fail_modes: vec![mode],
        ..Faults::default()
    }
}

/// Posts a signed orderquery with a client that gives up after `timeout`.
async fn orderquery(
    sim: &Sim,
    out_trade_no: &str,
    timeout: Duration,
) -> Result<reqwest::Response, reqwest::Error> {
    let request = with(merchant_fields(), &[("out_trade_no", out_trade_no)]);
    reqwest::Client::builder()
        .timeout(timeout)
        .build()?
        .post(format!("{}/pay/orderquery", sim.base))
        .body(wxpay_sim::signed_xml(request, KEY, SignType::Md5))
        .send()
        .await
}

#[tokio::test]
async fn orderquery_fails_in_each_mode_and_recovers() {
    let sim = Sim::start().await;
    sim.unified_order("Q1", 100, "http://127.0.0.1:9/notify")
        .await;
    let short = Duration::from_millis(300);

    sim.client
        .set_faults(&failing_orderquery(FailMode::SystemError))
        .await
        .unwrap();
    let response = orderquery(&sim, "Q1", short).await.unwrap();
    assert_eq!(response.status(), 200);
    let answer = xml::parse(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(answer["return_code"], "SUCCESS");
    assert_eq!(answer["result_code"], "FAIL");
    assert_eq!(answer["err_code"], "SYSTEMERROR");
    assert_eq!(verify(&answer, KEY), Ok(SignType::Md5));

    sim.client
        .set_faults(&failing_orderquery(FailMode::Http500))
        .await
        .unwrap();
    let response = orderquery(&sim, "Q1", short).await.unwrap();
    assert_eq!(response.status(), 500);

    sim.client
        .set_faults(&failing_orderquery(FailMode::Hang))
        .await
        .unwrap();
    let started = Instant::now();
    let error = orderquery(&sim, "Q1", short).await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert!(started.elapsed() >= short);

    let cleared = sim.client.set_faults(&Faults::default()).await.unwrap();
    assert_eq!(cleared, Faults::default());
    let answer = sim
        .call(
            "/pay/orderquery",
            with(merchant_fields(), &[("out_trade_no", "Q1")]),
        )
        .await;
    assert_eq!(answer["trade_state"], "NOTPAY");
    assert_eq!(sim.client.stats().await.unwrap().orderquery_calls, 4);
    sim.stop().await;
}

#[tokio::test]
async fn a_hanging_orderquery_is_cut_off_at_shutdown() {
    let sim = Sim::start_with(Config {
        faults: failing_orderquery(FailMode::Hang),
        ..fast_config()
    })
    .await;
    let base = sim.base.clone();
    let pending = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{base}/pay/orderquery"))
            .body("<xml></xml>")
            .send()
            .await?
            .bytes()
            .await
    });
    // Wait until the request is inside the simulator.
    while sim.client.stats().await.unwrap().orderquery_calls == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = sim.stop().await;
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    let outcome = tokio::time::timeout(WAIT, pending).await.unwrap().unwrap();
    assert!(
        outcome.is_err(),
        "the hung request got an answer: {outcome:?}"
    );
}

#[tokio::test]
async fn orderquery_latency_delays_the_answer() {
    let sim = Sim::start().await;
    sim.unified_order("L1", 100, "http://127.0.0.1:9/notify")
        .await;
    sim.client
        .set_faults(&Faults {
            orderquery_latency_ms: 300,
            ..Faults::default()
        })
        .await
        .unwrap();
    let started = Instant::now();
    let response = orderquery(&sim, "L1", WAIT).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    sim.stop().await;
}

#[tokio::test]
async fn dropped_attempts_are_recorded_and_the_schedule_goes_on() {
    let receiver = Receiver::start(vec![Reply::success()]).await;
    let sim = Sim::start_with(Config {
        faults: Faults {
            notify_drop_ratio: 1.0,
            ..Faults::default()
        },
        ..fast_config()
    })
    .await;
    sim.unified_order("D1", 100, &receiver.url).await;
    sim.client.pay("D1", true).await.unwrap();
    let order = sim
        .client
        .wait_for_order("D1", WAIT, |o| o.attempts.len() >= 2)
        .await
        .unwrap();
    for attempt in &order.attempts {
        assert!(!attempt.success);
        assert_eq!(attempt.http_status, None);
        assert!(attempt.error.as_deref().unwrap().contains("dropped"));
    }
    assert!(receiver.hits().is_empty());

    sim.client.set_faults(&Faults::default()).await.unwrap();
    let order = sim
        .client
        .wait_for_order("D1", WAIT, |o| o.delivered)
        .await
        .unwrap();
    assert!(order.attempts.last().unwrap().success);
    assert_eq!(receiver.hits().len(), 1);
    let stats = sim.client.stats().await.unwrap();
    assert!(stats.notifications_dropped >= 2);
    assert_eq!(stats.notifications_sent, 1);
    sim.stop().await;
}

#[tokio::test]
async fn duplicates_arrive_concurrently() {
    // Each reply takes 300 ms: copies sent one after another would arrive 300 ms apart.
    let receiver = Receiver::start(vec![Reply::success().after(Duration::from_millis(300))]).await;
    let sim = Sim::start_with(Config {
        faults: Faults {
            notify_duplicates: 3,
            ..Faults::default()
        },
        ..fast_config()
    })
    .await;
    sim.unified_order("U1", 100, &receiver.url).await;
    let paid = sim.client.pay("U1", true).await.unwrap();
    let order = sim
        .client
        .wait_for_order("U1", WAIT, |o| o.attempts.len() >= 3)
        .await
        .unwrap();
    assert!(order.delivered);
    assert!(order.attempts.iter().all(|a| a.success));

    let hits = receiver.hits();
    assert_eq!(hits.len(), 3);
    let first = hits.iter().map(|h| h.at).min().unwrap();
    let last = hits.iter().map(|h| h.at).max().unwrap();
    assert!(
        last - first < Duration::from_millis(250),
        "{:?}",
        last - first
    );
    for hit in &hits {
        assert_eq!(hit.fields["transaction_id"], paid.transaction_id);
        assert_eq!(verify(&hit.fields, KEY), Ok(SignType::Md5));
    }
    // Acknowledged: no further attempts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.hits().len(), 3);
    sim.stop().await;
}

#[tokio::test]
async fn shuffled_notifications_arrive_out_of_order() {
    let receiver = Receiver::start(vec![Reply::success()]).await;
    let sim = Sim::start_with(Config {
        faults: Faults {
            notify_shuffle: true,
            notify_shuffle_max_ms: 600,
            ..Faults::default()
        },
        seed: Some(7),
        ..fast_config()
    })
    .await;
    let orders: Vec<String> = (0..8).map(|i| format!("O{i}")).collect();
    for no in &orders {
        sim.unified_order(no, 100, &receiver.url).await;
    }
    for no in &orders {
        sim.client.pay(no, true).await.unwrap();
    }
    let hits = receiver.wait_for_hits(orders.len()).await;
    let arrived: Vec<&str> = hits
        .iter()
        .map(|h| h.fields["out_trade_no"].as_str())
        .collect();
    assert_ne!(arrived, orders, "arrived in payment order");
    sim.stop().await;
}

#[tokio::test]
async fn faults_round_trip_and_bad_ones_are_refused() {
    let sim = Sim::start().await;
    assert_eq!(sim.client.faults().await.unwrap(), Faults::default());
    let faults = Faults {
        orderquery_latency_ms: 5,
        orderquery_fail_ratio: 0.25,
        orderquery_fail_modes: vec![FailMode::Hang, FailMode::SystemError],
        notify_drop_ratio: 0.5,
        notify_duplicates: 2,
        notify_shuffle: true,
        notify_shuffle_max_ms: 50,
        unknown_field: true,
    };
    assert_eq!(sim.client.set_faults(&faults).await.unwrap(), faults);
    assert_eq!(sim.client.faults().await.unwrap(), faults);

    let bad = Faults {
        orderquery_fail_ratio: 2.0,
        ..Faults::default()
    };
    let error = sim.client.set_faults(&bad).await.unwrap_err();
    assert_eq!(error.status(), Some(400));
    assert!(
        error.to_string().contains("orderquery_fail_ratio"),
        "{error}"
    );
    assert_eq!(sim.client.faults().await.unwrap(), faults);

    // Unknown fields are refused rather than silently ignored.
    let response = reqwest::Client::new()
        .put(format!("{}/sim/faults", sim.base))
        .json(&serde_json::json!({"notify_dupes": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    sim.stop().await;
}
