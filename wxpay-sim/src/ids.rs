//! The identifiers WeChat mints: `transaction_id`, `prepay_id`, `code_url`, `openid`,
//! `coupon_id_$n`. They look like real ones (length, prefix, alphabet) so that code parsing or
//! storing them is exercised realistically; they carry no meaning.

use chrono::{DateTime, Utc};
use paynotify::wxpay::time::format_time_end;
use rand::{Rng, distr::Alphanumeric};

/// A 28-digit WeChat order number like `4200001234202401011234567890`: `4200` + 6 digits +
/// the Beijing date + 10 digits.
pub(crate) fn transaction_id(now: DateTime<Utc>) -> String {
    let date = &format_time_end(now)[..8];
    format!("4200{}{date}{}", digits(6), digits(10))
}

/// A prepay id like `wx20141027200939552265...`: `wx` + Beijing time + 22 alphanumerics.
pub(crate) fn prepay_id(now: DateTime<Utc>) -> String {
    format!(
        "wx{}{}",
        format_time_end(now),
        alphanumerics(22).to_lowercase()
    )
}

/// A NATIVE payment's QR code content.
pub(crate) fn code_url() -> String {
    format!("weixin://wxpay/bizpayurl?pr={}", alphanumerics(7))
}

/// A payer id under the merchant's appid, 28 characters starting with `o`.
pub(crate) fn openid() -> String {
    format!("o{}", alphanumerics(27))
}

/// A coupon id: 10 digits, within the String(20) of `coupon_id_$n` (the doc's example is
/// `10000`).
pub(crate) fn coupon_id() -> String {
    format!("1{}", digits(9))
}

fn digits(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

fn alphanumerics(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_wechat_shapes() {
        let now = DateTime::parse_from_rfc3339("2024-01-01T16:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = transaction_id(now);
        assert_eq!(id.len(), 28);
        assert!(id.starts_with("4200"));
        assert!(id.bytes().all(|b| b.is_ascii_digit()));
        // 16:30 UTC is already the next day in Beijing.
        assert_eq!(&id[10..18], "20240102");
        assert_ne!(id, transaction_id(now));

        let prepay = prepay_id(now);
        assert!(prepay.starts_with("wx20240102003000"));
        assert_eq!(prepay.len(), 2 + 14 + 22);
        assert!(code_url().starts_with("weixin://wxpay/bizpayurl?pr="));
        assert_eq!(openid().len(), 28);
        let coupon = coupon_id();
        assert_eq!(coupon.len(), 10);
        assert!(coupon.bytes().all(|b| b.is_ascii_digit()));
    }
}
