//! The shared library of the payment-callback services.
//!
//! - [`proto`]: the generated gRPC code for `order.v1` and `pay.v1`.
//! - [`wxpay`]: WeChat Pay API v2 — XML, signatures, ack replies (pure functions), and the
//!   HTTP client for WeChat's merchant API.
//! - [`auth`]: bearer-token authentication of the internal gRPC calls.
//! - [`config`]: defaults → TOML file → environment → flags, for every binary.
//! - [`replicas`]: calls spread over several replicas of a downstream service.
//! - [`unary_body`]: request bodies that end with their last message (one frame less a call).
//! - [`tls`]: optional TLS on the internal gRPC hops (server identity, client trust).
//! - [`runtime`]: telemetry, shutdown signal, gRPC health and reflection: what every service
//!   shares.
//! - [`grpc_server`]: the limits every gRPC server holds its callers to, and the request id
//!   as a span shows it.
//! - [`error_chain`]: an error and its sources on one line, for logs.
//! - [`loggable`]: text from outside, bounded and escaped for a log line.

pub mod auth;
pub mod config;
pub mod grpc_server;
pub mod metrics;
pub mod proto;
pub mod replicas;
pub mod runtime;
pub mod tls;
pub mod unary_body;
pub mod wxpay;

use std::borrow::Cow;

/// An error and its sources on one line (`outer: cause: root cause`), for log lines and
/// messages that must say why, not only what.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Text from outside (a notification's fields, what the parser saw in them) as it may stand in
/// a log line or a verdict reason. The text formatter writes such values raw, so a newline in
/// them would start a line of the sender's making: control characters (C0, DEL, C1) and the
/// Unicode line and paragraph separators are escaped as `char::escape_debug` writes them (`\n`,
/// `\u{1b}`), and the result is cut to at most `max_chars` characters, never inside an escape.
/// Text that needs neither comes back as it is, without a copy. Applying it again with the same
/// or a larger bound changes nothing, so a log line may guard text that was guarded before.
pub fn loggable(text: &str, max_chars: usize) -> Cow<'_, str> {
    let breaks_lines = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    let Some((count, (at, _))) = text
        .char_indices()
        .enumerate()
        .find(|&(count, (_, c))| count == max_chars || breaks_lines(c))
    else {
        return Cow::Borrowed(text);
    };
    if count == max_chars {
        return Cow::Borrowed(&text[..at]);
    }
    let mut shown = String::with_capacity(text.len().min(max_chars) + 8);
    shown.push_str(&text[..at]);
    let mut room = max_chars - count;
    for c in text[at..].chars() {
        let escape = breaks_lines(c).then(|| c.escape_debug());
        let width = escape.as_ref().map_or(1, ExactSizeIterator::len);
        if width > room {
            break;
        }
        room -= width;
        match escape {
            Some(escape) => shown.extend(escape),
            None => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loggable_text_is_one_bounded_line() {
        assert!(matches!(
            loggable("签名失败", 128),
            Cow::Borrowed("签名失败")
        ));
        assert_eq!(loggable("ok\nWARN forged", 128), "ok\\nWARN forged");
        assert_eq!(
            loggable("a\r\u{1b}[31m\u{85}\u{2028}b", 128),
            "a\\r\\u{1b}[31m\\u{85}\\u{2028}b"
        );
        assert_eq!(loggable(&"订".repeat(40), 32), "订".repeat(32));
        // An escape that does not fit is left out whole.
        assert_eq!(loggable("abc\u{1b}", 5), "abc");
        assert_eq!(loggable("abc\n", 5), "abc\\n");
        let long = "x\n".repeat(1000);
        let shown = loggable(&long, 100);
        assert!(shown.chars().count() <= 100 && !shown.chars().any(char::is_control));
        // Applying it again changes nothing.
        assert_eq!(loggable(&shown, 100), shown);
        assert_eq!(loggable("", 0), "");
        assert_eq!(loggable("x", 0), "");
    }
}
