//! WeChat Pay v2 signatures (SPEC §2): MD5 or HMAC-SHA256 over the fields sorted by name,
//! empty values and `sign` left out, unknown fields included, `&key=<API key>` appended,
//! upper-case hex. Verification compares in constant time.

use hmac::{KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::xml::Fields;

/// The signature algorithms of API v2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignType {
    Md5,
    HmacSha256,
}

impl SignType {
    /// The value of the `sign_type` field for this algorithm.
    pub fn as_str(self) -> &'static str {
        match self {
            SignType::Md5 => "MD5",
            SignType::HmacSha256 => "HMAC-SHA256",
        }
    }

    /// The algorithm a message declares: its `sign_type` field, MD5 when absent or empty.
    pub fn declared_by(fields: &Fields) -> Result<SignType, SignError> {
        match fields.get("sign_type").map(String::as_str) {
            None | Some("") | Some("MD5") => Ok(SignType::Md5),
            Some("HMAC-SHA256") => Ok(SignType::HmacSha256),
            Some(other) => Err(SignError::UnsupportedSignType(other.to_owned())),
        }
    }

    fn hex_len(self) -> usize {
        match self {
            SignType::Md5 => 32,
            SignType::HmacSha256 => 64,
        }
    }

    fn other(self) -> SignType {
        match self {
            SignType::Md5 => SignType::HmacSha256,
            SignType::HmacSha256 => SignType::Md5,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error("the message has no `sign` field")]
    MissingSign,
    #[error("unsupported sign_type `{0}`")]
    UnsupportedSignType(String),
    #[error("signature does not match (sign_type {declared})")]
    Mismatch { declared: &'static str },
}

/// The signature of `fields` under `key`.
pub fn sign(fields: &Fields, key: &str, sign_type: SignType) -> String {
    match sign_type {
        SignType::Md5 => {
            let mut md5 = Md5::new();
            feed_sign_string(fields, key, |bytes| md5.update(bytes));
            hex::encode_upper(md5.finalize())
        }
        SignType::HmacSha256 => {
            // HMAC-SHA256 keyed with the API key accepts keys of any length.
            let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes())
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
            feed_sign_string(fields, key, |bytes| mac.update(bytes));
            hex::encode_upper(mac.finalize().into_bytes())
        }
    }
}

/// Adds `sign` (and, for HMAC-SHA256, the `sign_type` it covers) to an outgoing message.
pub fn sign_fields(fields: &mut Fields, key: &str, sign_type: SignType) {
    fields.remove("sign");
    if sign_type == SignType::HmacSha256 {
        fields.insert("sign_type".into(), sign_type.as_str().into());
    }
    let signature = sign(fields, key, sign_type);
    fields.insert("sign".into(), signature);
}

/// Verifies a received message's `sign` and returns the algorithm that matched.
///
/// The algorithm is the declared one (`sign_type`, MD5 when absent). WeChat has been seen to
/// sign a small share of notifications with the other algorithm than declared (SPEC §2.3), so
/// when the signature's length is that of the other algorithm it is tried too; the caller can
/// compare the result with [`SignType::declared_by`] to log it.
pub fn verify(fields: &Fields, key: &str) -> Result<SignType, SignError> {
    let received = fields
        .get("sign")
        .filter(|s| !s.is_empty())
        .ok_or(SignError::MissingSign)?
        .to_ascii_uppercase();
    let declared = SignType::declared_by(fields)?;
    if matches(fields, key, declared, &received) {
        return Ok(declared);
    }
    let other = declared.other();
    if received.len() == other.hex_len() && matches(fields, key, other, &received) {
        return Ok(other);
    }
    Err(SignError::Mismatch {
        declared: declared.as_str(),
    })
}

fn matches(fields: &Fields, key: &str, sign_type: SignType, received: &str) -> bool {
    let expected = sign(fields, key, sign_type);
    expected.as_bytes().ct_eq(received.as_bytes()).into()
}

/// Streams `k1=v1&k2=v2…&key=<key>` (SPEC's stringSignTemp) into `sink` without building it.
fn feed_sign_string(fields: &Fields, key: &str, mut sink: impl FnMut(&[u8])) {
    let mut first = true;
    for (name, value) in fields {
        if name == "sign" || value.is_empty() {
            continue;
        }
        if !first {
            sink(b"&");
        }
        first = false;
        sink(name.as_bytes());
        sink(b"=");
        sink(value.as_bytes());
    }
    if !first {
        sink(b"&");
    }
    sink(b"key=");
    sink(key.as_bytes());
}

#[cfg(test)]
mod tests {
    //! Known-answer tests from ../shared/wxpay/SPEC.md §9.
    use super::*;

    const DOC_KEY: &str = "192006250b4c09247ec02edce69f6a2d";

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn v2_sign_example() -> Fields {
        fields(&[
            ("appid", "wxd930ea5d5a258f4f"),
            ("mch_id", "10000100"),
            ("device_info", "1000"),
            ("body", "test"),
            ("nonce_str", "ibuaiVcKdpRxkhJA"),
        ])
    }

    /// V2-NOTIFY-1's fields.
    pub(crate) fn notify_1() -> Fields {
        fields(&[
            ("appid", "wx2421b1c4370ec43b"),
            ("attach", "支付测试"),
            ("bank_type", "CFT"),
            ("cash_fee", "1"),
            ("fee_type", "CNY"),
            ("is_subscribe", "Y"),
            ("mch_id", "10000100"),
            ("nonce_str", "5d2b6c2a8db53831f7eda20af46e531c"),
            ("openid", "oUpF8uMEb4qRXf22hE3X68TekukE"),
            ("out_trade_no", "1409811653"),
            ("result_code", "SUCCESS"),
            ("return_code", "SUCCESS"),
            ("time_end", "20140903131540"),
            ("total_fee", "1"),
            ("trade_type", "JSAPI"),
            ("transaction_id", "1004400740201409030005092168"),
        ])
    }

    fn sign_string(fields: &Fields, key: &str) -> String {
        let mut out = Vec::new();
        feed_sign_string(fields, key, |b| out.extend_from_slice(b));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn v2_sign_string_a() {
        assert_eq!(
            sign_string(&v2_sign_example(), DOC_KEY),
            "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA&key=192006250b4c09247ec02edce69f6a2d"
        );
    }

    #[test]
    fn v2_sign_1_md5() {
        assert_eq!(
            sign(&v2_sign_example(), DOC_KEY, SignType::Md5),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
    }

    #[test]
    fn v2_sign_2_hmac_sha256() {
        assert_eq!(
            sign(&v2_sign_example(), DOC_KEY, SignType::HmacSha256),
            "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
        );
    }

    #[test]
    fn v2_notify_1_md5() {
        let mut n = notify_1();
        assert_eq!(
            sign(&n, DOC_KEY, SignType::Md5),
            "A79C5985C6A8FC7DA5DF1F7656412908"
        );
        n.insert("sign".into(), "A79C5985C6A8FC7DA5DF1F7656412908".into());
        assert_eq!(verify(&n, DOC_KEY), Ok(SignType::Md5));
        // WeChat sends upper case; a lower-case copy still verifies.
        n.insert("sign".into(), "a79c5985c6a8fc7da5df1f7656412908".into());
        assert_eq!(verify(&n, DOC_KEY), Ok(SignType::Md5));
    }

    #[test]
    fn v2_notify_2_hmac_signs_its_sign_type_field() {
        let mut n = notify_1();
        n.insert("sign_type".into(), "HMAC-SHA256".into());
        let expected = "91A356D1D5F2450A3381951A8174E5FDFBA86A909ADDDBA50A9A61343CA47DEA";
        assert_eq!(sign(&n, DOC_KEY, SignType::HmacSha256), expected);
        n.insert("sign".into(), expected.into());
        assert_eq!(verify(&n, DOC_KEY), Ok(SignType::HmacSha256));

        let mut built = notify_1();
        sign_fields(&mut built, DOC_KEY, SignType::HmacSha256);
        assert_eq!(built["sign"], expected);
    }

    #[test]
    fn v2_notify_3_empty_is_absent_and_unknown_fields_count() {
        let mut n = notify_1();
        n.insert("attach".into(), String::new());
        n.insert("zz_new_field".into(), "x".into());
        assert_eq!(
            sign(&n, DOC_KEY, SignType::Md5),
            "B924F94F0C2F77375D84FA1B3A1E912D"
        );
        n.remove("attach");
        assert_eq!(
            sign(&n, DOC_KEY, SignType::Md5),
            "B924F94F0C2F77375D84FA1B3A1E912D"
        );
    }

    #[test]
    fn v2_notify_4_tampered_amount_is_rejected() {
        let mut n = notify_1();
        n.insert("total_fee".into(), "100".into());
        assert_eq!(
            sign(&n, DOC_KEY, SignType::Md5),
            "0CE7BD347687B42733C74BC34D9FFC02"
        );
        n.insert("sign".into(), "A79C5985C6A8FC7DA5DF1F7656412908".into());
        assert_eq!(
            verify(&n, DOC_KEY),
            Err(SignError::Mismatch { declared: "MD5" })
        );
    }

    #[test]
    fn wrong_key_missing_sign_and_unknown_sign_type_are_rejected() {
        let mut n = notify_1();
        assert_eq!(verify(&n, DOC_KEY), Err(SignError::MissingSign));
        n.insert("sign".into(), String::new());
        assert_eq!(verify(&n, DOC_KEY), Err(SignError::MissingSign));
        n.insert("sign".into(), "A79C5985C6A8FC7DA5DF1F7656412908".into());
        assert!(verify(&n, "another-key-another-key-another-k").is_err());
        n.insert("sign_type".into(), "RSA".into());
        assert_eq!(
            verify(&n, DOC_KEY),
            Err(SignError::UnsupportedSignType("RSA".into()))
        );
    }

    #[test]
    fn a_message_signed_with_the_undeclared_algorithm_still_verifies() {
        // Declares HMAC-SHA256 but carries an MD5 signature over the same fields.
        let mut n = notify_1();
        n.insert("sign_type".into(), "HMAC-SHA256".into());
        let md5 = sign(&n, DOC_KEY, SignType::Md5);
        n.insert("sign".into(), md5);
        assert_eq!(verify(&n, DOC_KEY), Ok(SignType::Md5));
    }
}
