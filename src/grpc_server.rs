//! What every gRPC server of the workspace (pay-svc, order-svc) shares about its callers: the
//! limits one connection and one message are held to, and the request id as it may stand in
//! a span. Health and reflection answer without a token, so these limits are all that stands
//! between an anonymous caller and the server's memory.
//!
//! [`limits`] goes on the `tonic::transport::Server` builder; the generated service servers
//! each take [`MAX_DECODING_MESSAGE_SIZE`] (`.max_decoding_message_size(..)`), as do health and
//! reflection from [`crate::runtime`]. None of it adds a layer to the call path: the stream
//! limit and the PINGs are HTTP/2 settings of the connection, the size check is one comparison
//! in the decoder.

use std::{borrow::Cow, time::Duration};

use tonic::transport::Server;

use crate::wxpay::xml::MAX_BODY_BYTES;

/// The largest request message a service decodes. The largest legitimate one is pay-svc's
/// `ConfirmPayment`: the fields of a notification body of at most [`MAX_BODY_BYTES`] (64 KiB)
/// as a protobuf map. A map entry costs a few bytes more than its name and value, an XML field
/// a few more still (`<ab/>`, the shortest, is five bytes for a six-byte entry), so the worst
/// body, all short empty fields, encodes to about 1.2 times its size. Twice it leaves room; the
/// rest of the API (order ids, amounts, a page token) is far smaller. tonic's default is 4 MiB.
pub const MAX_DECODING_MESSAGE_SIZE: usize = 2 * MAX_BODY_BYTES;

/// The most streams (calls) one connection may have open at once
/// (`SETTINGS_MAX_CONCURRENT_STREAMS`); tonic's default is no limit, so one connection could
/// hold any number of health `Watch` streams open.
///
/// Legitimate load is far below it. A gateway sends every notification it is handling to a
/// pay-svc replica over one connection, at most one per HTTP connection it serves: at most
/// `GATEWAY_MAX_CONNECTIONS` (4096 by default). pay-svc calls order-svc one call at a time per
/// notification (GetOrder, then MarkPaid), all over one connection per order-svc replica, so it
/// has at most as many calls open as it has notifications from all gateways, plus one for
/// reconciliation: four gateways at their default cap fit. Past the limit a call is not
/// refused: the client's HTTP/2 stack honours the setting and holds the next call until one
/// ends (hyper's client opens at most 100 streams before it has read the setting).
pub const MAX_CONCURRENT_STREAMS: u32 = 16_384;

/// How long a connection may go without a frame from the client before the server sends an
/// HTTP/2 PING, and how long the PING may go unanswered before the connection is dropped. A
/// client whose host died never closes its connections; without the PING they, and the
/// streams on them, would stay until the kernel gives up. pay-svc and the gateway PING every
/// 5 s themselves (`crate::replicas`), so the server never needs to PING them while they live.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The gateway's request id, carried in gRPC metadata from the gateway through pay-svc to
/// order-svc.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The most of a request id a span shows. The gateway's ids are 16 characters; anyone who can
/// reach a server can send any other (up to the 16 KiB header limit).
pub const MAX_LOGGED_REQUEST_ID_CHARS: usize = 64;

/// The connection limits above, on a server builder (before its layers and services).
pub fn limits(builder: Server) -> Server {
    builder
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
}

/// The request id of a call's headers, bounded and escaped for a span (`trace_fn`); empty when
/// there is none or it is not text.
pub fn request_id(headers: &http::HeaderMap) -> Cow<'_, str> {
    let id = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    crate::loggable(id, MAX_LOGGED_REQUEST_ID_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(id: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        if let Ok(value) = http::HeaderValue::from_str(id) {
            headers.insert(REQUEST_ID_HEADER, value);
        }
        headers
    }

    #[test]
    fn a_request_id_in_a_span_is_short_and_one_line() {
        assert_eq!(request_id(&headers("0123456789abcdef")), "0123456789abcdef");
        assert_eq!(request_id(&http::HeaderMap::new()), "");

        let long = "a".repeat(10_000);
        assert_eq!(
            request_id(&headers(&long)).chars().count(),
            MAX_LOGGED_REQUEST_ID_CHARS
        );
        // A tab is the one control character a header value may hold.
        assert_eq!(request_id(&headers("id\tlevel=ERROR")), "id\\tlevel=ERROR");
        // Bytes that are not visible ASCII: no id rather than a lossy one.
        let mut opaque = http::HeaderMap::new();
        opaque.insert(
            REQUEST_ID_HEADER,
            http::HeaderValue::from_bytes(b"\xe8\xae\xa2").unwrap(),
        );
        assert_eq!(request_id(&opaque), "");
    }

    #[test]
    fn a_confirm_payment_of_the_largest_body_fits() {
        use crate::proto::pay::v1::ConfirmPaymentRequest;
        use prost::Message;
        // One field as large as the body allows, the worst case for protobuf against XML.
        let value = "x".repeat(MAX_BODY_BYTES - "<xml><a></a></xml>".len());
        let request = ConfirmPaymentRequest {
            fields: [("a".to_owned(), value)].into(),
        };
        assert!(request.encoded_len() <= MAX_BODY_BYTES + 16);
        assert!(request.encoded_len() < MAX_DECODING_MESSAGE_SIZE);
    }

    #[test]
    fn a_confirm_payment_of_the_most_fields_a_body_holds_fits() {
        use crate::proto::pay::v1::ConfirmPaymentRequest;
        use prost::Message;
        // As many distinct empty fields as the body holds: the worst case by fields. Names of
        // three letters (`<abc/>`, six bytes) are the shortest that come in such numbers.
        let mut body = String::from("<xml>");
        let letters = ('a'..='z').chain('A'..='Z');
        let names = letters
            .clone()
            .flat_map(|a| letters.clone().map(move |b| (a, b)))
            .flat_map(|(a, b)| letters.clone().map(move |c| format!("{a}{b}{c}")));
        for name in names {
            let field = format!("<{name}/>");
            if body.len() + field.len() + "</xml>".len() > MAX_BODY_BYTES {
                break;
            }
            body.push_str(&field);
        }
        body.push_str("</xml>");
        let fields = crate::wxpay::xml::parse(body.as_bytes()).unwrap();
        assert!(fields.len() > 10_000, "{}", fields.len());
        let request = ConfirmPaymentRequest {
            fields: fields.into_iter().collect(),
        };
        assert!(request.encoded_len() < MAX_DECODING_MESSAGE_SIZE);
    }
}
