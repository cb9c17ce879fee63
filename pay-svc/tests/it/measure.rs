//! Figures, not checks: ConfirmPayment latency through the real stack (in-process, SQLite,
//! simulator on loopback). Run with
//! `cargo test -p pay-svc --test it measure -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use crate::support::{bounded, paid_notification, signed, stack};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{what}: n={} p50={:?} p95={:?} max={:?}",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.95),
        samples[samples.len() - 1]
    );
}

#[tokio::test]
#[ignore = "measurement; run by hand"]
async fn measure_confirm_payment_latency() {
    bounded(async {
        let mut s = stack().await;
        let (mut first, mut duplicate) = (Vec::new(), Vec::new());
        for _ in 0..100 {
            let (order, transaction_id) = s.paid_at_wechat(100).await;
            let fields = signed(&paid_notification(&order.id, 100, &transaction_id));
            let started = Instant::now();
            let response = s.confirm(fields.clone()).await.unwrap();
            first.push(started.elapsed());
            assert!(response.acknowledge);
            let started = Instant::now();
            s.confirm(fields).await.unwrap();
            duplicate.push(started.elapsed());
        }
        report(
            "ConfirmPayment, first delivery (GetOrder + orderquery + MarkPaid)",
            first,
        );
        report("ConfirmPayment, duplicate (GetOrder only)", duplicate);
    })
    .await;
}
