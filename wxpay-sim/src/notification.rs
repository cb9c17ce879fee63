//! The v2 payment result notification (SPEC §1.2) as WeChat builds it: every field a real one
//! carries, signed over all of them. Pure; the simulator's delivery uses it, and so can tests
//! that post hand-made (or deliberately tampered) notifications to a notify_url.

use chrono::{DateTime, Utc};
use paynotify::wxpay::{
    Fields,
    sign::{SignType, sign_fields},
    time::{format_time_end, nonce_str},
    xml::to_xml,
};

use crate::ids;

/// The content of a payment notification, before signing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub appid: String,
    pub mch_id: String,
    pub device_info: Option<String>,
    /// `SUCCESS` or `FAIL`: the payment's business result.
    pub result_code: String,
    pub err_code: Option<String>,
    pub err_code_des: Option<String>,
    pub openid: String,
    /// `Y` or `N`.
    pub is_subscribe: String,
    pub trade_type: String,
    pub bank_type: String,
    /// In fen.
    pub total_fee: i64,
    /// In fen.
    pub cash_fee: i64,
    pub fee_type: String,
    pub transaction_id: String,
    pub out_trade_no: String,
    /// Echoed from unifiedorder when given there.
    pub attach: Option<String>,
    /// Sent as Beijing time `yyyyMMddHHmmss`.
    pub time_end: DateTime<Utc>,
}

impl Notification {
    /// A successful NATIVE payment of `total_fee` fen made just now, with fresh
    /// `transaction_id` and `openid`: change any field before signing.
    pub fn paid(appid: &str, mch_id: &str, out_trade_no: &str, total_fee: i64) -> Self {
        let now = Utc::now();
        Notification {
            appid: appid.into(),
            mch_id: mch_id.into(),
            device_info: None,
            result_code: "SUCCESS".into(),
            err_code: None,
            err_code_des: None,
            openid: ids::openid(),
            is_subscribe: "N".into(),
            trade_type: "NATIVE".into(),
            bank_type: "OTHERS".into(),
            total_fee,
            cash_fee: total_fee,
            fee_type: "CNY".into(),
            transaction_id: ids::transaction_id(now),
            out_trade_no: out_trade_no.into(),
            attach: None,
            time_end: now,
        }
    }

    /// The unsigned fields (with `return_code` SUCCESS, no `nonce_str` or `sign` yet).
    pub fn to_fields(&self) -> Fields {
        let mut fields = Fields::new();
        let mut put = |name: &str, value: String| {
            fields.insert(name.to_owned(), value);
        };
        put("return_code", "SUCCESS".into());
        put("appid", self.appid.clone());
        put("mch_id", self.mch_id.clone());
        put("result_code", self.result_code.clone());
        put("openid", self.openid.clone());
        put("is_subscribe", self.is_subscribe.clone());
        put("trade_type", self.trade_type.clone());
        put("bank_type", self.bank_type.clone());
        put("total_fee", self.total_fee.to_string());
        put("cash_fee", self.cash_fee.to_string());
        put("fee_type", self.fee_type.clone());
        put("transaction_id", self.transaction_id.clone());
        put("out_trade_no", self.out_trade_no.clone());
        put("time_end", format_time_end(self.time_end));
        for (name, value) in [
            ("device_info", &self.device_info),
            ("err_code", &self.err_code),
            ("err_code_des", &self.err_code_des),
            ("attach", &self.attach),
        ] {
            if let Some(value) = value {
                put(name, value.clone());
            }
        }
        fields
    }
}

/// The notification as WeChat posts it: XML with a fresh `nonce_str`, signed with `key`
/// (`sign_type` included when HMAC-SHA256).
pub fn signed_notification(notification: &Notification, key: &str, sign_type: SignType) -> String {
    signed_xml(notification.to_fields(), key, sign_type)
}

/// Any field map as a signed v2 message: adds a fresh `nonce_str` unless one is present,
/// signs over all fields, serialises. For hand-made or tampered messages in tests.
pub fn signed_xml(mut fields: Fields, key: &str, sign_type: SignType) -> String {
    fields
        .entry("nonce_str".to_owned())
        .or_insert_with(nonce_str);
    sign_fields(&mut fields, key, sign_type);
    to_xml(&fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use paynotify::wxpay::{sign::verify, xml::parse};

    const KEY: &str = "T6m9iK73b0kn9g5v426MKfHQH7X8rKwb";

    #[test]
    fn a_paid_notification_has_every_required_field_and_verifies() {
        let mut n = Notification::paid("wx8397f8696b538317", "1473426802", "A1", 1999);
        n.attach = Some("支付测试".into());
        let xml = signed_notification(&n, KEY, SignType::Md5);
        let fields = parse(xml.as_bytes()).unwrap();
        for name in [
            "return_code",
            "appid",
            "mch_id",
            "nonce_str",
            "sign",
            "result_code",
            "openid",
            "is_subscribe",
            "trade_type",
            "bank_type",
            "total_fee",
            "fee_type",
            "cash_fee",
            "transaction_id",
            "out_trade_no",
            "attach",
            "time_end",
        ] {
            assert!(fields.contains_key(name), "{name} missing");
        }
        assert!(!fields.contains_key("sign_type"));
        assert_eq!(fields["total_fee"], "1999");
        assert_eq!(fields["attach"], "支付测试");
        assert_eq!(fields["time_end"], format_time_end(n.time_end));
        assert_eq!(verify(&fields, KEY), Ok(SignType::Md5));
        assert!(verify(&fields, "another-key").is_err());
    }

    #[test]
    fn hmac_notifications_declare_their_sign_type() {
        let n = Notification::paid("wx8397f8696b538317", "1473426802", "A1", 1);
        let fields = parse(signed_notification(&n, KEY, SignType::HmacSha256).as_bytes()).unwrap();
        assert_eq!(fields["sign_type"], "HMAC-SHA256");
        assert_eq!(fields["sign"].len(), 64);
        assert_eq!(verify(&fields, KEY), Ok(SignType::HmacSha256));
    }

    #[test]
    fn tampering_after_signing_breaks_the_signature() {
        let n = Notification::paid("wx8397f8696b538317", "1473426802", "A1", 1);
        let mut fields = parse(signed_notification(&n, KEY, SignType::Md5).as_bytes()).unwrap();
        fields.insert("total_fee".into(), "100".into());
        assert!(verify(&fields, KEY).is_err());
    }

    #[test]
    fn signed_xml_keeps_a_given_nonce() {
        let mut fields = Fields::new();
        fields.insert("nonce_str".into(), "fixed".into());
        let parsed = parse(signed_xml(fields, KEY, SignType::Md5).as_bytes()).unwrap();
        assert_eq!(parsed["nonce_str"], "fixed");
    }
}
