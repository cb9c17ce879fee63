//! The v2 payment result notification (SPEC §1.2) as WeChat builds it: every field a real one
//! carries — coupons and fields added after a receiver was written included — signed over all
//! of them. Pure; the simulator's delivery uses it, and so can tests that post hand-made (or
//! deliberately tampered) notifications to a notify_url.

use chrono::{DateTime, Utc};
use paynotify::wxpay::{
    Fields,
    sign::{SignType, sign_fields},
    time::{format_time_end, nonce_str},
    xml::to_xml,
};

use crate::ids;

/// The field the `unknown_field` switch adds to notifications and orderquery answers: a name
/// no receiver knows, standing for the fields WeChat "may add at any time" (SPEC §1.2, §2.1;
/// the name is the one of vector V2-NOTIFY-3). Signed like every other field, so a receiver
/// that verifies only the fields it knows computes another signature and refuses it.
pub const UNKNOWN_FIELD: (&str, &str) = ("zz_new_field", "wxpay-sim");

/// A coupon that paid part of an order (`coupon_id_$n`, `coupon_fee_$n`, SPEC §1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coupon {
    /// String(20), e.g. `10000`.
    pub id: String,
    /// In fen.
    pub fee: i64,
}

impl Coupon {
    /// A coupon worth `fee` fen with a fresh id.
    pub fn new(fee: i64) -> Self {
        Coupon {
            id: ids::coupon_id(),
            fee,
        }
    }
}

/// The coupon fields of a payment made partly with `coupons`, as both the notification and
/// orderquery carry them: `coupon_fee` (the sum), `coupon_count` and, counting from 0,
/// `coupon_id_$n` and `coupon_fee_$n`. Nothing for a cash-only payment. `coupon_type_$n` is
/// left out: WeChat sends it only to merchants with no-recharge coupons enabled (SPEC §1.2).
pub(crate) fn put_coupons(fields: &mut Fields, coupons: &[Coupon]) {
    if coupons.is_empty() {
        return;
    }
    let total: i64 = coupons.iter().map(|coupon| coupon.fee).sum();
    fields.insert("coupon_fee".into(), total.to_string());
    fields.insert("coupon_count".into(), coupons.len().to_string());
    for (n, coupon) in coupons.iter().enumerate() {
        fields.insert(format!("coupon_id_{n}"), coupon.id.clone());
        fields.insert(format!("coupon_fee_{n}"), coupon.fee.to_string());
    }
}

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
    /// In fen: the order total, what a receiver compares with its order.
    pub total_fee: i64,
    /// In fen: what the user paid in cash, total_fee less the coupons.
    pub cash_fee: i64,
    /// The coupons that paid the rest; empty for a cash-only payment.
    pub coupons: Vec<Coupon>,
    pub fee_type: String,
    pub transaction_id: String,
    pub out_trade_no: String,
    /// Echoed from unifiedorder when given there.
    pub attach: Option<String>,
    /// Sent as Beijing time `yyyyMMddHHmmss`.
    pub time_end: DateTime<Utc>,
    /// Fields this struct does not model, e.g. [`UNKNOWN_FIELD`]: sent and signed like the
    /// rest. A modelled field of the same name wins.
    pub extra_fields: Fields,
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
            coupons: Vec::new(),
            fee_type: "CNY".into(),
            transaction_id: ids::transaction_id(now),
            out_trade_no: out_trade_no.into(),
            attach: None,
            time_end: now,
            extra_fields: Fields::new(),
        }
    }

    /// The same payment with `coupon` paying part of it: `cash_fee` drops by its amount
    /// (SPEC §1.2: order − coupon = cash), `total_fee` stays.
    pub fn with_coupon(mut self, coupon: Coupon) -> Self {
        self.cash_fee -= coupon.fee;
        self.coupons.push(coupon);
        self
    }

    /// The unsigned fields (with `return_code` SUCCESS, no `nonce_str` or `sign` yet).
    pub fn to_fields(&self) -> Fields {
        let mut fields = self.extra_fields.clone();
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
        put_coupons(&mut fields, &self.coupons);
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
    use paynotify::wxpay::{
        sign::{sign, verify},
        time::parse_time_end,
        xml::parse,
    };

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
    fn coupons_lower_cash_fee_and_are_numbered_from_zero() {
        let n = Notification::paid("wx8397f8696b538317", "1473426802", "A1", 1999)
            .with_coupon(Coupon {
                id: "10000".into(),
                fee: 300,
            })
            .with_coupon(Coupon {
                id: "10001".into(),
                fee: 100,
            });
        let fields = parse(signed_notification(&n, KEY, SignType::Md5).as_bytes()).unwrap();
        assert_eq!(verify(&fields, KEY), Ok(SignType::Md5));
        for (name, value) in [
            ("total_fee", "1999"),
            ("cash_fee", "1599"),
            ("coupon_fee", "400"),
            ("coupon_count", "2"),
            ("coupon_id_0", "10000"),
            ("coupon_fee_0", "300"),
            ("coupon_id_1", "10001"),
            ("coupon_fee_1", "100"),
        ] {
            assert_eq!(fields[name], value, "{name}");
        }
        assert!(!fields.contains_key("coupon_type_0"));
    }

    #[test]
    fn an_unknown_field_is_signed_as_in_spec_vector_v2_notify_3() {
        // V2-NOTIFY-1's fields without attach, plus zz_new_field=x (SPEC §9).
        let mut n = Notification::paid("wx2421b1c4370ec43b", "10000100", "1409811653", 1);
        n.bank_type = "CFT".into();
        n.is_subscribe = "Y".into();
        n.openid = "oUpF8uMEb4qRXf22hE3X68TekukE".into();
        n.trade_type = "JSAPI".into();
        n.transaction_id = "1004400740201409030005092168".into();
        n.time_end = parse_time_end("20140903131540").unwrap();
        n.extra_fields.insert("zz_new_field".into(), "x".into());
        let mut fields = n.to_fields();
        fields.insert(
            "nonce_str".into(),
            "5d2b6c2a8db53831f7eda20af46e531c".into(),
        );
        assert_eq!(
            sign(&fields, "192006250b4c09247ec02edce69f6a2d", SignType::Md5),
            "B924F94F0C2F77375D84FA1B3A1E912D"
        );
    }

    #[test]
    fn extra_fields_are_signed_but_never_replace_modelled_ones() {
        let (name, value) = UNKNOWN_FIELD;
        let mut n = Notification::paid("wx8397f8696b538317", "1473426802", "A1", 1999);
        n.extra_fields.insert(name.into(), value.into());
        n.extra_fields.insert("total_fee".into(), "1".into());
        let mut fields = parse(signed_notification(&n, KEY, SignType::Md5).as_bytes()).unwrap();
        assert_eq!(fields[name], value);
        assert_eq!(fields["total_fee"], "1999");
        assert_eq!(verify(&fields, KEY), Ok(SignType::Md5));
        fields.remove(name);
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
