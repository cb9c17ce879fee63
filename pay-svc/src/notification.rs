//! Steps 1–4a of ConfirmPayment, pure: screen a notification's raw fields, in the order WeChat
//! documents (protocol, authenticity, business result), before anything is looked up.
//! A notification that passes becomes a [`PaymentClaim`]; every other ends here in a verdict
//! and changes nothing.

use paynotify::{
    loggable,
    proto::pay::v1::NotifyOutcome,
    wxpay::{
        Fields,
        sign::{self, SignType},
    },
};
use secrecy::{ExposeSecret, SecretString};

use crate::{claim::PaymentClaim, verdict::Verdict};

/// Who we are at WeChat: notifications for anyone else are refused.
#[derive(Clone, Debug)]
pub struct Merchant {
    pub appid: String,
    pub mch_id: String,
    pub api_key: SecretString,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Screening {
    /// Decided without looking anything up.
    Decided(Verdict),
    /// Authentic and claims a payment: check it against the order and WeChat.
    Claim(PaymentClaim),
}

pub fn screen(fields: &Fields, merchant: &Merchant) -> Screening {
    screen_with_previous_key(fields, merchant, None)
}

/// [`screen`], also accepting a signature made with `previous_key` (the key being rotated
/// out, `WXPAY_API_KEY_PREVIOUS`): WeChat may still deliver notifications signed before the
/// switch.
pub fn screen_with_previous_key(
    fields: &Fields,
    merchant: &Merchant,
    previous_key: Option<&SecretString>,
) -> Screening {
    let get = |name: &str| fields.get(name).map(String::as_str).unwrap_or("");
    let decided = |outcome, reason: String| Screening::Decided(Verdict::new(outcome, reason));

    // 1. A communication-level notice carries no signed payment: nothing to do. Nor is its
    // text signed, so anyone's: it goes into the reason bounded by WeChat's own field lengths
    // and escaped, since the reason is logged here and in the gateway.
    if get("return_code") != "SUCCESS" {
        return decided(
            NotifyOutcome::ReturnFail,
            format!(
                "return_code {}: {}",
                loggable(get("return_code"), 16),
                loggable(get("return_msg"), 128)
            ),
        );
    }

    // 2. Ours and authentic.
    if get("appid") != merchant.appid {
        return decided(NotifyOutcome::WrongMerchant, "appid is not ours".into());
    }
    if get("mch_id") != merchant.mch_id {
        return decided(NotifyOutcome::WrongMerchant, "mch_id is not ours".into());
    }
    let verified = match sign::verify(fields, merchant.api_key.expose_secret()) {
        Ok(used) => Ok(used),
        // The current key's error is the one reported: it says what is expected now.
        Err(error) => match previous_key.map(|key| sign::verify(fields, key.expose_secret())) {
            Some(Ok(used)) => {
                tracing::info!(
                    event = "notify.previous_key_used",
                    "notification verified with WXPAY_API_KEY_PREVIOUS"
                );
                crate::metrics::previous_key_accepted(false);
                Ok(used)
            }
            _ => {
                log_signature_clues(fields);
                Err(error)
            }
        },
    };
    match verified {
        Ok(used) => {
            if SignType::declared_by(fields).is_ok_and(|declared| declared != used) {
                // Seen in the wild (SPEC §2.3); authentic, but worth knowing about.
                tracing::info!(
                    event = "notify.sign_type_fallback",
                    used = used.as_str(),
                    "notification signed with the undeclared algorithm"
                );
            }
        }
        // An unsupported sign_type is repeated in the error, and it is not signed either.
        Err(err) => {
            let reason = loggable(&err.to_string(), 128).into_owned();
            return decided(NotifyOutcome::BadSignature, reason);
        }
    }

    // 3. Verified, but not a payment.
    if get("result_code") != "SUCCESS" {
        return decided(
            NotifyOutcome::NotPaid,
            format!(
                "result_code {}: {} {}",
                get("result_code"),
                get("err_code"),
                get("err_code_des")
            )
            .trim_end()
            .to_owned(),
        );
    }

    // 4a. The fields a payment needs.
    match PaymentClaim::from_notification(fields) {
        Ok(claim) => Screening::Claim(claim),
        Err(reason) => decided(NotifyOutcome::Malformed, reason),
    }
}

/// What can be seen of a rejected signature without the key, for telling its causes apart
/// (docs/TROUBLESHOOTING.md): one INFO line beside the verdict's WARN. Field names only,
/// never values; at most a few names per list, each bounded.
fn log_signature_clues(fields: &Fields) {
    let sign = fields.get("sign").map(String::as_str).unwrap_or("");
    let has_lower = sign.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = sign.bytes().any(|b| b.is_ascii_uppercase());
    let sign_case = match (has_lower, has_upper) {
        (true, true) => "mixed",
        (true, false) => "lower",
        _ => "upper",
    };
    let names = |suspect: fn(&str) -> bool| {
        fields
            .iter()
            .filter(|(name, value)| name.as_str() != "sign" && suspect(value))
            .map(|(name, _)| loggable(name, 32))
            .take(8)
            .collect::<Vec<_>>()
            .join(",")
    };
    tracing::info!(
        event = "notify.bad_signature.clues",
        sign_len = sign.len(),
        sign_hex = sign.bytes().all(|b| b.is_ascii_hexdigit()),
        sign_case,
        sign_type = %loggable(fields.get("sign_type").map(String::as_str).unwrap_or(""), 32),
        field_count = fields.len(),
        empty = %names(str::is_empty),
        padded = %names(|v| v != v.trim()),
        non_ascii = %names(|v| !v.is_ascii()),
        mojibake = %names(looks_mis_decoded),
        url_encoded = %names(looks_url_encoded),
        "what the rejected signature looked like"
    );
}

/// Text decoded with the wrong charset: U+FFFD, or Latin-1 letters (GBK bytes read as
/// Latin-1 turn `支付` into `Ö§¸¶`; WeChat's own text is ASCII or CJK).
fn looks_mis_decoded(value: &str) -> bool {
    value
        .chars()
        .any(|c| c == '\u{FFFD}' || ('\u{80}'..='\u{FF}').contains(&c))
}

/// `%XX` escapes: a framework URL-encoded the value before it was signed or forwarded.
fn looks_url_encoded(value: &str) -> bool {
    value
        .as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use paynotify::wxpay::sign::sign_fields;

    use super::*;

    const KEY: &str = "T6m9iK73b0kn9g5v426MKfHQH7X8rKwb";

    fn merchant() -> Merchant {
        Merchant {
            appid: "wx8397f8696b538317".into(),
            mch_id: "1473426802".into(),
            api_key: KEY.into(),
        }
    }

    fn notification(changes: &[(&str, &str)]) -> Fields {
        let mut fields: Fields = [
            ("return_code", "SUCCESS"),
            ("appid", "wx8397f8696b538317"),
            ("mch_id", "1473426802"),
            ("nonce_str", "n0nce"),
            ("result_code", "SUCCESS"),
            ("openid", "oUpF8uMEb4qRXf22hE3X68TekukE"),
            ("trade_type", "NATIVE"),
            ("bank_type", "CFT"),
            ("total_fee", "2500"),
            ("cash_fee", "2500"),
            ("transaction_id", "4200000001"),
            ("out_trade_no", "o1"),
            ("time_end", "20240101120000"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in changes {
            fields.insert(k.to_string(), v.to_string());
        }
        sign_fields(&mut fields, KEY, SignType::Md5);
        fields
    }

    fn outcome(fields: &Fields) -> NotifyOutcome {
        match screen(fields, &merchant()) {
            Screening::Decided(verdict) => verdict.outcome,
            Screening::Claim(_) => NotifyOutcome::Unspecified,
        }
    }

    #[test]
    fn an_authentic_payment_becomes_a_claim() {
        match screen(&notification(&[]), &merchant()) {
            Screening::Claim(claim) => {
                assert_eq!(claim.out_trade_no, "o1");
                assert_eq!(claim.total_fee, 2500);
            }
            other => panic!("{other:?}"),
        }
        // HMAC-SHA256 notifications too.
        let mut hmac = notification(&[]);
        sign_fields(&mut hmac, KEY, SignType::HmacSha256);
        assert_eq!(outcome(&hmac), NotifyOutcome::Unspecified);
    }

    #[test]
    fn return_fail_comes_first_and_needs_no_signature() {
        let fields: Fields = [("return_code", "FAIL"), ("return_msg", "签名失败")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(outcome(&fields), NotifyOutcome::ReturnFail);
        assert_eq!(outcome(&Fields::new()), NotifyOutcome::ReturnFail);
    }

    #[test]
    fn return_fail_text_cannot_forge_a_log_line() {
        let body = "<xml><return_code>X</return_code><return_msg>ok&#10;2025-01-01T00:00:00Z WARN pay_svc: event=\"notify.payment_conflict\" out_trade_no=123</return_msg></xml>";
        let fields = paynotify::wxpay::xml::parse(body.as_bytes()).unwrap();
        let reason = |fields: &Fields| match screen(fields, &merchant()) {
            Screening::Decided(verdict) => verdict.reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reason(&fields),
            "return_code X: ok\\n2025-01-01T00:00:00Z WARN pay_svc: event=\"notify.payment_conflict\" out_trade_no=123"
        );

        let huge: Fields = [
            ("return_code", "\u{1b}[2K".repeat(1000)),
            ("return_msg", "\r\n\u{85}x".repeat(10_000)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let reason = reason(&huge);
        assert!(reason.chars().count() <= 16 + 128 + 20, "{reason}");
        assert!(!reason.chars().any(char::is_control), "{reason}");
    }

    #[test]
    fn an_unsigned_sign_type_reaches_the_reason_bounded_and_escaped() {
        let mut fields = notification(&[]);
        fields.insert("sign_type".into(), format!("X\n{}", "y".repeat(1000)));
        match screen(&fields, &merchant()) {
            Screening::Decided(verdict) => {
                assert_eq!(verdict.outcome, NotifyOutcome::BadSignature);
                assert!(verdict.reason.contains("X\\ny"), "{}", verdict.reason);
                assert!(verdict.reason.chars().count() <= 128);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn forged_and_foreign_notifications_are_refused() {
        let mut tampered = notification(&[]);
        tampered.insert("total_fee".into(), "1".into());
        assert_eq!(outcome(&tampered), NotifyOutcome::BadSignature);

        let mut unsigned = notification(&[]);
        unsigned.remove("sign");
        assert_eq!(outcome(&unsigned), NotifyOutcome::BadSignature);

        let mut other_key = notification(&[]);
        sign_fields(
            &mut other_key,
            "another-key-another-key-another-k",
            SignType::Md5,
        );
        assert_eq!(outcome(&other_key), NotifyOutcome::BadSignature);

        // Correctly signed, but for another merchant.
        assert_eq!(
            outcome(&notification(&[("appid", "wx0000000000000000")])),
            NotifyOutcome::WrongMerchant
        );
        assert_eq!(
            outcome(&notification(&[("mch_id", "1900000109")])),
            NotifyOutcome::WrongMerchant
        );
    }

    #[test]
    fn the_previous_key_is_accepted_only_when_configured() {
        const OLD: &str = "0ld0ld0ld0ld0ld0ld0ld0ld0ld0ld0l";
        let mut old_signed = notification(&[]);
        sign_fields(&mut old_signed, OLD, SignType::Md5);
        assert_eq!(outcome(&old_signed), NotifyOutcome::BadSignature);

        let previous = SecretString::from(OLD);
        let rotating = |fields: &Fields| match screen_with_previous_key(
            fields,
            &merchant(),
            Some(&previous),
        ) {
            Screening::Decided(verdict) => verdict.outcome,
            Screening::Claim(_) => NotifyOutcome::Unspecified,
        };
        assert_eq!(rotating(&old_signed), NotifyOutcome::Unspecified);
        assert_eq!(rotating(&notification(&[])), NotifyOutcome::Unspecified);
        let mut other = notification(&[]);
        sign_fields(
            &mut other,
            "another-key-another-key-another-k",
            SignType::Md5,
        );
        assert_eq!(rotating(&other), NotifyOutcome::BadSignature);
    }

    #[test]
    fn clues_spot_mangled_fields() {
        assert!(looks_mis_decoded("Ö§¸¶²âÊÔ"));
        assert!(looks_mis_decoded("\u{FFFD}"));
        assert!(!looks_mis_decoded("支付测试"));
        assert!(!looks_mis_decoded("2500"));
        assert!(looks_url_encoded("%E6%94%AF%E4%BB%98"));
        assert!(!looks_url_encoded("100%"));
        // Logging them never panics, whatever the fields.
        let mut odd = notification(&[("attach", " %41Ö")]);
        odd.insert("sign".into(), "abc".into());
        log_signature_clues(&odd);
        log_signature_clues(&Fields::new());
    }

    #[test]
    fn the_signature_is_checked_before_the_business_result() {
        let mut failed = notification(&[("result_code", "FAIL"), ("err_code", "NOTENOUGH")]);
        assert_eq!(outcome(&failed), NotifyOutcome::NotPaid);
        failed.insert("err_code_des".into(), "x".into());
        assert_eq!(outcome(&failed), NotifyOutcome::BadSignature);
    }

    #[test]
    fn authentic_but_incomplete_notifications_are_malformed() {
        let mut missing = notification(&[]);
        missing.remove("transaction_id");
        sign_fields(&mut missing, KEY, SignType::Md5);
        assert_eq!(outcome(&missing), NotifyOutcome::Malformed);
        assert_eq!(
            outcome(&notification(&[("total_fee", "25.00")])),
            NotifyOutcome::Malformed
        );
    }
}
