//! WeChat's `time_end` (`yyyyMMddHHmmss`, Beijing time, UTC+8) ⇄ UTC, and nonces.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Timelike, Utc};
use rand::{Rng, distr::Alphanumeric};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("time_end `{0}` is not a valid yyyyMMddHHmmss Beijing time")]
pub struct TimeEndError(pub String);

/// Beijing time is UTC+8 all year (no daylight saving since 1991).
fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| unreachable!("UTC+8 is a valid offset"))
}

/// Parses a `time_end` value into UTC.
pub fn parse_time_end(value: &str) -> Result<DateTime<Utc>, TimeEndError> {
    let invalid = || TimeEndError(value.to_owned());
    if value.len() != 14 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    // Fixed-width fields read straight from the digits: this runs for every notification, and
    // chrono's `parse_from_str` interprets its format string again on every call.
    let number = |from: usize, to: usize| {
        value.as_bytes()[from..to]
            .iter()
            .fold(0u32, |n, digit| n * 10 + u32::from(digit - b'0'))
    };
    let naive = NaiveDate::from_ymd_opt(number(0, 4) as i32, number(4, 6), number(6, 8))
        .and_then(|date| date.and_hms_opt(number(8, 10), number(10, 12), number(12, 14)))
        .ok_or_else(invalid)?;
    beijing()
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(invalid)
}

/// Formats a UTC time as WeChat's `time_end`.
pub fn format_time_end(time: DateTime<Utc>) -> String {
    let t = time.with_timezone(&beijing());
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A random 32-character `nonce_str`.
pub fn nonce_str() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_end_is_beijing_time() {
        let t = parse_time_end("20140903131540").unwrap();
        assert_eq!(t.to_rfc3339(), "2014-09-03T05:15:40+00:00");
        assert_eq!(format_time_end(t), "20140903131540");
        // Just after midnight in Beijing is the previous day in UTC.
        let t = parse_time_end("20240101000500").unwrap();
        assert_eq!(t.to_rfc3339(), "2023-12-31T16:05:00+00:00");
    }

    #[test]
    fn malformed_time_end_is_rejected() {
        for bad in [
            "",
            "2014090313154",
            "201409031315400",
            "20141303131540",
            "2014-09-03 13:1",
            "20140230120000",
            "20141231240000",
            "20141231236000",
            "20141231235960",
        ] {
            assert!(parse_time_end(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nonces_are_32_alphanumerics_and_differ() {
        let a = nonce_str();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, nonce_str());
    }
}
