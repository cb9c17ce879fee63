//! Notification delivery by WeChat's rules (SPEC §1.4–1.5): POST the signed XML to the order's
//! notify_url; only a 2xx reply whose body is a conforming SUCCESS ack, within the deadline,
//! stops the retries. Retries follow WeChat's 15 s … 6 h schedule, scaled by the time
//! scale, at fixed offsets from the first attempt, so slow replies do not push later attempts
//! back. Every attempt is recorded on the order. Schedules run as background tasks that end
//! on shutdown. The notification faults apply per attempt: dropped, sent as N concurrent
//! copies, each copy delayed at random, an unknown field added.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use paynotify::wxpay::reply::is_success_ack;
use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};

use crate::{
    error_chain,
    model::Attempt,
    notification::{UNKNOWN_FIELD, signed_notification},
    server::App,
    state::StoreError,
};

/// WeChat's waits between notification attempts (SPEC §1.5): 15 retries after the first
/// attempt, 24 h 4 min in all. Retry n goes out at the sum of the first n waits after the
/// first attempt (SPEC §1.5's cumulative offsets), however long the attempts before it took.
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

/// Whether a reply body acknowledges a notification, as WeChat judges it (SPEC §1.4): `<xml>`
/// holding `return_code` SUCCESS and optionally `return_msg` (any text), in either order, each
/// as CDATA or plain text, with nothing else in or around it but whitespace between the fields
/// (the reply WeChat's support gives is indented so). "Stray characters before/after the
/// document or between tags" fail: a declaration, a comment, another field, text such as a
/// literal `\n`, anything after `</xml>`. Stricter than [`is_success_ack`], which judges a
/// reply's meaning for the services' own use.
pub fn is_exact_success_ack(body: &[u8]) -> bool {
    let Some(mut rest) = std::str::from_utf8(body)
        .ok()
        .and_then(|text| text.strip_prefix("<xml>"))
        .and_then(|text| text.strip_suffix("</xml>"))
    else {
        return false;
    };
    let (mut code, mut message) = (None, None);
    loop {
        rest = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        if rest.is_empty() {
            return code == Some("SUCCESS");
        }
        let (slot, found) = match field(rest, "return_code") {
            Some(found) => (&mut code, found),
            None => match field(rest, "return_msg") {
                Some(found) => (&mut message, found),
                None => return false,
            },
        };
        let (value, after) = found;
        if slot.replace(value).is_some() {
            return false;
        }
        rest = after;
    }
}

/// `<name>value</name>` at the start of `text`, the value CDATA or plain text: the value and
/// what follows the field.
fn field<'a>(text: &'a str, name: &str) -> Option<(&'a str, &'a str)> {
    let text = text
        .strip_prefix('<')?
        .strip_prefix(name)?
        .strip_prefix('>')?;
    let close = format!("</{name}>");
    let end = text.find(&close)?;
    let raw = &text[..end];
    let value = match raw
        .strip_prefix("<![CDATA[")
        .and_then(|value| value.strip_suffix("]]>"))
    {
        Some(value) => value,
        None if !raw.contains('<') => raw,
        None => return None,
    };
    Some((value, &text[end + close.len()..]))
}

/// Posts one notification to `url` (`Content-Type: text/xml`) and judges the reply: 2xx with
/// the exact SUCCESS ack ([`is_exact_success_ack`]), all within `deadline`. The client should
/// not follow redirects.
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
            } else if !is_exact_success_ack(&body) {
                let quoted: String = text.chars().take(QUOTED_REPLY_CHARS).collect();
                // Say why a reply that means SUCCESS still fails: the usual surprise.
                let why = if is_success_ack(&body) {
                    "reply means SUCCESS but is not the conforming SUCCESS ack WeChat \
                     expects (<xml> with return_code and return_msg only: no declaration, \
                     comment, other field or text outside the tags)"
                } else {
                    "reply is not the SUCCESS ack"
                };
                fail(Some(status), Some(text), format!("{why}: {quoted:?}"))
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

/// The notification of a paid order as the next attempt would send it (fresh nonce_str and
/// signature, the unknown field when switched on), and its notify_url.
pub(crate) fn signed_body(app: &App, out_trade_no: &str) -> Result<(String, String), StoreError> {
    let (mut notification, url) = app.store.notification(out_trade_no, &app.config.merchant)?;
    if app.faults.unknown_field() {
        let (name, value) = UNKNOWN_FIELD;
        notification.extra_fields.insert(name.into(), value.into());
    }
    let xml = signed_notification(
        &notification,
        app.config.merchant.key(),
        app.config.notify_sign_type.into(),
    );
    Ok((xml, url))
}

/// Delivers the notification of a paid order once, now, and records the attempt: one record
/// per copy sent, or one failed record when the attempt is dropped.
pub(crate) async fn deliver_once(
    app: &App,
    out_trade_no: &str,
) -> Result<Vec<Attempt>, StoreError> {
    let (xml, url) = signed_body(app, out_trade_no)?;
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
            // Even a zero sleep waits for the timer's next millisecond tick.
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
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
    let start = Instant::now();
    for (number, offset) in attempt_offsets().enumerate() {
        // A deadline, not a wait: an attempt that overran its slot is followed at once. (The
        // check spares the first attempt the timer's tick: it goes out at `start` itself.)
        let due = start + app.config.scaled(offset);
        if Instant::now() < due {
            tokio::time::sleep_until(due).await;
        }
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

/// When each attempt is due, in real time after the first: 0, then SPEC §1.5's cumulative
/// offsets 15 s, 30 s, 1 min, 4 min, … 24 h 4 min.
fn attempt_offsets() -> impl Iterator<Item = Duration> {
    std::iter::once(Duration::ZERO).chain(RETRY_INTERVALS.iter().scan(
        Duration::ZERO,
        |offset, &interval| {
            *offset += interval;
            Some(*offset)
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use paynotify::wxpay::reply::SUCCESS_ACK;

    #[test]
    fn the_schedule_totals_24_hours_4_minutes() {
        let total: Duration = RETRY_INTERVALS.iter().sum();
        assert_eq!(total, Duration::from_secs(24 * 3600 + 4 * 60));
    }

    #[test]
    fn attempts_are_due_at_specs_cumulative_offsets() {
        let seconds: Vec<u64> = attempt_offsets().map(|o| o.as_secs()).collect();
        let h = 3600;
        assert_eq!(
            seconds,
            [
                0,
                15,
                30,
                60,
                4 * 60,
                14 * 60,
                34 * 60,
                h + 4 * 60,
                h + 34 * 60,
                2 * h + 4 * 60,
                3 * h + 4 * 60,
                6 * h + 4 * 60,
                9 * h + 4 * 60,
                12 * h + 4 * 60,
                18 * h + 4 * 60,
                24 * h + 4 * 60,
            ]
        );
    }

    #[test]
    fn only_a_conforming_ack_counts() {
        let ack = SUCCESS_ACK;
        // return_msg is optional and free text; values may be CDATA or plain text.
        for conforming in [
            ack.to_owned(),
            // As WeChat's support gives it (SPEC §1.4), and the fields the other way round.
            "<xml>\n  <return_code><![CDATA[SUCCESS]]></return_code>\n  \
             <return_msg><![CDATA[OK]]></return_msg>\n</xml>"
                .to_owned(),
            "<xml><return_msg>OK</return_msg><return_code>SUCCESS</return_code></xml>".to_owned(),
            ack.replace("<![CDATA[OK]]>", "OK"),
            ack.replace("OK", "成功"),
            "<xml><return_code>SUCCESS</return_code></xml>".to_owned(),
            "<xml><return_code><![CDATA[SUCCESS]]></return_code></xml>".to_owned(),
            "<xml><return_code>SUCCESS</return_code><return_msg></return_msg></xml>".to_owned(),
        ] {
            assert!(is_exact_success_ack(conforming.as_bytes()), "{conforming}");
        }
        for near_miss in [
            format!("{ack}\n"),
            format!("\n{ack}"),
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>{ack}"),
            ack.replace("</return_code>", "</return_code>\\n"),
            ack.replace("</return_code>", "</return_code><!-- ok -->"),
            ack.replace("SUCCESS", "FAIL"),
            ack.replace("SUCCESS", "success"),
            ack.replace("return_msg", "msg"),
            format!("{ack}<xml></xml>"),
            "<xml><return_code>SUCCESS</return_code><return_code>SUCCESS</return_code></xml>"
                .to_owned(),
            "<xml><return_msg>OK</return_msg></xml>".to_owned(),
            "<xml><return_code>SUCCESS<b/></return_code></xml>".to_owned(),
            "ok".to_owned(),
            String::new(),
        ] {
            assert!(!is_exact_success_ack(near_miss.as_bytes()), "{near_miss}");
        }
    }
}
