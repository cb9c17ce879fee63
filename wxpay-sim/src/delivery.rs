//! Notification delivery by WeChat's rules (SPEC §1.4–1.5): POST the signed XML to the order's
//! notify_url; only a 2xx reply carrying the exact SUCCESS ack within the deadline stops the
//! retries, which follow WeChat's 15 s … 6 h schedule scaled by the time scale. Every attempt
//! is recorded on the order. Schedules run as background tasks that end on shutdown.
//! The notification faults apply per attempt: dropped, sent as N concurrent copies, each copy
//! delayed at random.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use paynotify::wxpay::reply::is_success_ack;
use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};

use crate::{
    error_chain, model::Attempt, notification::signed_notification, server::App, state::StoreError,
};

/// WeChat's waits between notification attempts (SPEC §1.5): 15 retries after the first
/// attempt, 24 h 4 min in all.
pub const RETRY_INTERVALS: [Duration; 15] = [
    Duration::from_secs(15),
    Duration::from_secs(15),
    Duration::from_secs(30),
    Duration::from_secs(3 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(20 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(3 * 3600),
    Duration::from_secs(3 * 3600),
    Duration::from_secs(3 * 3600),
    Duration::from_secs(6 * 3600),
    Duration::from_secs(6 * 3600),
];

/// The most of a reply body that is read; a real ack is under 100 bytes.
const MAX_REPLY_BYTES: usize = 64 * 1024;
/// How much of a bad reply an attempt's error quotes.
const QUOTED_REPLY_CHARS: usize = 80;

/// What a notify_url answered to one notification, judged as WeChat judges it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyReply {
    /// `None` when no reply came (timeout, connection refused or reset).
    pub http_status: Option<u16>,
    /// The reply body, when one was read (lossy UTF-8, at most 64 KiB).
    pub body: Option<String>,
    /// Whether WeChat would count it as SUCCESS and stop retrying.
    pub success: bool,
    /// Why it does not count; `None` on success.
    pub error: Option<String>,
    pub elapsed: Duration,
}

impl NotifyReply {
    fn into_attempt(self, at: chrono::DateTime<Utc>) -> Attempt {
        Attempt {
            at,
            http_status: self.http_status,
            success: self.success,
            error: self.error,
            elapsed_ms: u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// Posts one notification to `url` (`Content-Type: text/xml`) and judges the reply: 2xx with
/// the exact SUCCESS ack, all within `deadline`. The client should not follow redirects.
pub async fn post_notification(
    http: &reqwest::Client,
    url: &str,
    xml: String,
    deadline: Duration,
) -> NotifyReply {
    let started = Instant::now();
    let outcome = tokio::time::timeout(deadline, exchange(http, url, xml)).await;
    let elapsed = started.elapsed();
    let fail = |http_status, body, error: String| NotifyReply {
        http_status,
        body,
        success: false,
        error: Some(error),
        elapsed,
    };
    match outcome {
        Err(_) => fail(
            None,
            None,
            format!("no reply within the {} ms deadline", deadline.as_millis()),
        ),
        Ok(Err(error)) => fail(None, None, error_chain(&error)),
        Ok(Ok((status, body))) => {
            let text = String::from_utf8_lossy(&body).into_owned();
            if !(200..300).contains(&status) {
                fail(Some(status), Some(text), format!("HTTP {status}"))
            } else if !is_success_ack(&body) {
                let quoted: String = text.chars().take(QUOTED_REPLY_CHARS).collect();
                fail(
                    Some(status),
                    Some(text),
                    format!("reply is not the SUCCESS ack: {quoted:?}"),
                )
            } else {
                NotifyReply {
                    http_status: Some(status),
                    body: Some(text),
                    success: true,
                    error: None,
                    elapsed,
                }
            }
        }
    }
}

async fn exchange(
    http: &reqwest::Client,
    url: &str,
    xml: String,
) -> Result<(u16, Vec<u8>), reqwest::Error> {
    let mut response = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "text/xml")
        .body(xml)
        .send()
        .await?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_REPLY_BYTES {
            body.truncate(MAX_REPLY_BYTES);
            break;
        }
    }
    Ok((status, body))
}

/// Delivers the notification of a paid order once, now, and records the attempt: one record
/// per copy sent, or one failed record when the attempt is dropped.
pub(crate) async fn deliver_once(
    app: &App,
    out_trade_no: &str,
) -> Result<Vec<Attempt>, StoreError> {
    let (notification, url) = app.store.notification(out_trade_no, &app.config.merchant)?;
    let xml = signed_notification(
        &notification,
        app.config.merchant.key(),
        app.config.notify_sign_type.into(),
    );
    if app.faults.drop_notification() {
        warn!("fault: notification attempt dropped");
        app.stats.notifications_dropped.increment();
        let attempt = Attempt {
            at: Utc::now(),
            http_status: None,
            success: false,
            error: Some("dropped by the notify_drop_ratio fault: not sent".into()),
            elapsed_ms: 0,
        };
        app.store.record_attempt(out_trade_no, attempt.clone());
        return Ok(vec![attempt]);
    }
    // "The same notification may be sent by several servers" (SPEC §1.5): copies race.
    let copies = (0..app.faults.copies()).map(|_| {
        let delay = app.faults.shuffle_delay();
        let (xml, url) = (xml.clone(), url.as_str());
        async move {
            tokio::time::sleep(delay).await;
            let attempt = send(app, url, xml).await;
            app.store.record_attempt(out_trade_no, attempt.clone());
            attempt
        }
    });
    Ok(futures::future::join_all(copies).await)
}

async fn send(app: &App, url: &str, xml: String) -> Attempt {
    let at = Utc::now();
    app.stats.notifications_sent.increment();
    let reply = post_notification(&app.http, url, xml, app.config.reply_deadline()).await;
    if reply.success {
        app.stats.notifications_acked.increment();
        info!(
            status = reply.http_status,
            elapsed_ms = reply.elapsed.as_millis(),
            "notification acknowledged"
        );
    } else {
        warn!(
            status = reply.http_status,
            error = reply.error.as_deref().unwrap_or_default(),
            "notification not acknowledged"
        );
    }
    reply.into_attempt(at)
}

/// Starts (or restarts) WeChat's retry schedule for a paid order in the background,
/// replacing any schedule already running for it.
pub(crate) fn start_schedule(app: &Arc<App>, out_trade_no: &str) -> Result<(), StoreError> {
    let token = app.shutdown.child_token();
    if let Some(previous) = app.store.replace_schedule(out_trade_no, token.clone())? {
        previous.cancel();
    }
    // A root span: the schedule outlives the request that started it.
    let span = info_span!(parent: None, "notify_schedule", out_trade_no);
    let task_app = Arc::clone(app);
    let out_trade_no = out_trade_no.to_owned();
    app.tasks.spawn(
        async move {
            tokio::select! {
                () = token.cancelled() => {}
                () = run_schedule(&task_app, &out_trade_no) => {}
            }
        }
        .instrument(span),
    );
    Ok(())
}

async fn run_schedule(app: &App, out_trade_no: &str) {
    let waits = std::iter::once(Duration::ZERO)
        .chain(RETRY_INTERVALS.iter().map(|&i| app.config.scaled(i)));
    for (number, wait) in waits.enumerate() {
        tokio::time::sleep(wait).await;
        if app.store.is_delivered(out_trade_no) {
            return;
        }
        match deliver_once(app, out_trade_no).await {
            Ok(attempts) if attempts.iter().any(|a| a.success) => return,
            Ok(_) => {}
            Err(error) => {
                warn!(%error, "notification schedule stopped");
                return;
            }
        }
        if number == RETRY_INTERVALS.len() {
            warn!(
                attempts = number + 1,
                "giving up: WeChat's retry schedule is exhausted"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_totals_24_hours_4_minutes() {
        let total: Duration = RETRY_INTERVALS.iter().sum();
        assert_eq!(total, Duration::from_secs(24 * 3600 + 4 * 60));
    }
}
