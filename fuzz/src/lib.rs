//! The fuzz targets' bodies, as plain functions over bytes.
//!
//! libFuzzer calls them through `fuzz_targets/*.rs` (`cargo fuzz run`, nightly); the root
//! crate's integration tests include this same file (`tests/it/fuzz.rs`) and call them on the
//! seed corpus and on generated inputs, so the bounded run in CI exercises exactly the checks a
//! long fuzzing run does, on the stable toolchain. A target "finds something" by panicking:
//! every `assert!` here is a property of the protocol code, never a test of the input.

use pay_svc::notification::{Merchant, Screening, screen};
use paynotify::wxpay::{
    Fields,
    client::parse_fen,
    sign::{self, SignType},
    time::parse_time_end,
    xml::{self, MAX_BODY_BYTES, XmlError},
};

/// The merchant every input is screened as (wxpay-sim's demo merchant; any fixed one would do).
pub const APPID: &str = "wx8397f8696b538317";
pub const MCH_ID: &str = "1473426802";
pub const API_KEY: &str = "T6m9iK73b0kn9g5v426MKfHQH7X8rKwb";

pub fn merchant() -> Merchant {
    Merchant {
        appid: APPID.into(),
        mch_id: MCH_ID.into(),
        api_key: API_KEY.into(),
    }
}

/// Arbitrary bytes → `xml::parse`. Whatever parses must survive `to_xml` → `parse` unchanged.
pub fn xml_parse(data: &[u8]) {
    let Ok(fields) = xml::parse(data) else {
        return;
    };
    assert!(
        data.len() <= MAX_BODY_BYTES,
        "accepted a {}-byte body",
        data.len()
    );
    assert_round_trips(&fields);
}

/// Arbitrary bytes → `xml::parse` → `sign::verify` and pay-svc's screening (ConfirmPayment's
/// steps 1–4a) under a fixed key. Neither may panic, and a claim is only ever made for an
/// authentic payment to our merchant. Then the same fields signed by us (both algorithms)
/// must verify, straight and after a trip over the wire, and get past the signature check.
pub fn notify_verify(data: &[u8]) {
    let Ok(fields) = xml::parse(data) else {
        return;
    };
    check_screening(&fields);

    for sign_type in [SignType::Md5, SignType::HmacSha256] {
        let mut ours = fields.clone();
        // An MD5 message declares MD5 or nothing; a leftover unknown sign_type would make it
        // unverifiable by design (SPEC §2.3), which is not what this checks.
        if sign_type == SignType::Md5 {
            ours.remove("sign_type");
        }
        sign::sign_fields(&mut ours, API_KEY, sign_type);
        assert_eq!(
            sign::verify(&ours, API_KEY),
            Ok(sign_type),
            "our own {sign_type:?} signature does not verify: {ours:?}"
        );
        if let Some(wire) = wire_copy(&ours) {
            assert_eq!(
                sign::verify(&wire, API_KEY),
                Ok(sign_type),
                "our own {sign_type:?} signature does not verify after to_xml/parse"
            );
        }
        if let Screening::Decided(verdict) = check_screening(&ours) {
            assert_ne!(
                verdict.outcome,
                paynotify::proto::pay::v1::NotifyOutcome::BadSignature,
                "screening refused our own signature: {verdict:?}"
            );
        }
    }
}

/// `to_xml` then `parse` gives the same fields back, unless the serialised form is over the
/// size limit (it adds a CDATA section per field) or carries a known-lossy value.
pub fn assert_round_trips(fields: &Fields) {
    let Some(reparsed) = wire_copy(fields) else {
        return;
    };
    assert_eq!(&reparsed, fields, "to_xml/parse changed the fields");
}

/// `parse(to_xml(fields))`, or `None` where it cannot be the same fields: serialised over the
/// limit, or a name that is not an XML name (`b/`), which `to_xml` cannot write and `parse`
/// refuses.
fn wire_copy(fields: &Fields) -> Option<Fields> {
    if fields.keys().any(|name| !is_xml_name(name)) {
        return None;
    }
    let serialised = xml::to_xml(fields);
    match xml::parse(serialised.as_bytes()) {
        Ok(reparsed) => Some(reparsed),
        Err(XmlError::TooLarge { .. }) => None,
        Err(error) => panic!("to_xml output does not parse ({error}): {serialised:?}"),
    }
}

/// Screens `fields` and checks that a claim is only made for what deserves one.
fn check_screening(fields: &Fields) -> Screening {
    let merchant = merchant();
    let screening = screen(fields, &merchant);
    if let Screening::Claim(claim) = &screening {
        let get = |name: &str| fields.get(name).map(String::as_str).unwrap_or("");
        assert_eq!(get("return_code"), "SUCCESS");
        assert_eq!(get("result_code"), "SUCCESS");
        assert_eq!(get("appid"), APPID);
        assert_eq!(get("mch_id"), MCH_ID);
        assert!(
            sign::verify(fields, API_KEY).is_ok(),
            "claim from a message that does not verify"
        );
        assert_eq!(claim.out_trade_no, get("out_trade_no"));
        assert_eq!(claim.transaction_id, get("transaction_id"));
        assert!(!claim.out_trade_no.is_empty() && !claim.transaction_id.is_empty());
        assert!(claim.total_fee > 0);
        assert_eq!(parse_fen(get("total_fee")), Some(claim.total_fee));
        assert!(parse_time_end(&claim.time_end).is_ok());
    }
    screening
}

/// Roughly XML's Name production: a letter, `_` or `:`, then letters, digits, `_`, `:`, `.`, `-`.
pub fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '.' | '-'))
}
