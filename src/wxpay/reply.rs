//! The merchant's reply to a v2 notification (SPEC §1.4). Only the exact SUCCESS document
//! stops WeChat's retries; anything else, including a FAIL reply, makes it send again.

use super::xml::{self, push_cdata};

/// The reply that tells WeChat the notification was received and handled (vector V2-REPLY).
pub const SUCCESS_ACK: &str = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";

/// `return_msg` is String(128) in WeChat's table.
const MAX_REASON_CHARS: usize = 128;

/// A FAIL reply with a short reason; WeChat will send the notification again.
pub fn fail_ack(reason: &str) -> String {
    let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
    let mut out = String::with_capacity(96 + reason.len());
    out.push_str("<xml><return_code><![CDATA[FAIL]]></return_code><return_msg>");
    push_cdata(&mut out, &reason);
    out.push_str("</return_msg></xml>");
    out
}

/// Whether a reply counts as SUCCESS by WeChat's rules: a well-formed `<xml>` document with
/// `return_code` SUCCESS and nothing else around it.
pub fn is_success_ack(body: &[u8]) -> bool {
    xml::parse(body)
        .is_ok_and(|fields| fields.get("return_code").map(String::as_str) == Some("SUCCESS"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_ack_is_byte_exact() {
        assert_eq!(
            SUCCESS_ACK,
            "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
        );
        assert!(is_success_ack(SUCCESS_ACK.as_bytes()));
    }

    #[test]
    fn fail_ack_carries_a_bounded_reason() {
        let ack = fail_ack("order-svc unavailable");
        assert_eq!(
            ack,
            "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[order-svc unavailable]]></return_msg></xml>"
        );
        assert!(!is_success_ack(ack.as_bytes()));
        let long = fail_ack(&"签".repeat(500));
        let fields = xml::parse(long.as_bytes()).unwrap();
        assert_eq!(fields["return_msg"].chars().count(), MAX_REASON_CHARS);
    }

    #[test]
    fn replies_wechat_refuses_do_not_count() {
        for bad in [
            "ok",
            "success",
            "支付成功",
            "{\"return_code\":\"SUCCESS\";\"return_msg\":\"OK\"}",
            "<html><body>SUCCESS</body></html>",
            "<xml><return_code><![CDATA[SUCCESS]]></return_code>\\n<return_msg>OK</return_msg></xml>",
            "",
        ] {
            assert!(!is_success_ack(bad.as_bytes()), "{bad}");
        }
    }
}
