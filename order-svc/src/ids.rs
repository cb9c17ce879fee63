//! Snowflake-style decimal ids for new orders and log rows.
//!
//! The original system's generator handed out colliding ids (its second log insert failed on
//! the primary key). Here an id is the milliseconds since the original `IdWorker` epoch in the
//! high bits and random low bits: time-ordered, 19 decimal digits until 2080, valid as a
//! `bigint` and as the original `varchar(20)`. Nothing is coordinated between processes, so a
//! collision is possible (about one in four million per millisecond); inserts use
//! "insert if absent" and draw a new id when one happens. Within a process ids only grow, so
//! log rows written in the same millisecond (or second, where `operate_time` keeps seconds
//! only) list in the order they were written: `ListOrderLogs` sorts by time, then id.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;

/// Twitter's snowflake epoch (2010-11-04T01:42:54.657Z), which the original `IdWorker` uses.
const EPOCH_MS: i64 = 1_288_834_974_657;
const RANDOM_BITS: u32 = 22;
const RANDOM_MASK: u64 = (1 << RANDOM_BITS) - 1;

/// How many fresh ids an insert tries before giving up on colliding ones.
pub const MAX_ATTEMPTS: usize = 5;

/// The last id this process handed out.
static LAST_ID: AtomicU64 = AtomicU64::new(0);

/// A new id for an order or a log row, greater than every id this process drew before.
pub fn next_id() -> String {
    let drawn = id_at(Utc::now().timestamp_millis(), rand::random::<u64>());
    above_last(&LAST_ID, drawn).to_string()
}

/// `drawn`, or the one after the last id handed out if that is greater (the same millisecond
/// with smaller random bits, or a clock set back).
fn above_last(last: &AtomicU64, drawn: u64) -> u64 {
    let next = |last: u64| drawn.max(last + 1);
    match last.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
        Some(next(last))
    }) {
        Ok(previous) | Err(previous) => next(previous),
    }
}

fn id_at(unix_ms: i64, random: u64) -> u64 {
    let since_epoch = u64::try_from(unix_ms.saturating_sub(EPOCH_MS)).unwrap_or(0);
    (since_epoch << RANDOM_BITS) | (random & RANDOM_MASK)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAY_2026_MS: i64 = 1_778_000_000_000;

    #[test]
    fn ids_are_time_ordered_whatever_their_random_bits() {
        let earlier = id_at(MAY_2026_MS, u64::MAX);
        let later = id_at(MAY_2026_MS + 1, 0);
        assert!(earlier < later);
        // Equal digit counts make the string order the numeric order.
        assert_eq!(earlier.to_string().len(), later.to_string().len());
        assert!(earlier.to_string() < later.to_string());
    }

    #[test]
    fn ids_fit_a_bigint_and_varchar_20_until_2080() {
        let now = id_at(MAY_2026_MS, u64::MAX);
        assert_eq!(now.to_string().len(), 19);
        let end = id_at(EPOCH_MS + (1 << 41) - 1, u64::MAX);
        assert!(i64::try_from(end).is_ok());
        assert!(end.to_string().len() <= 20);
    }

    #[test]
    fn ids_of_one_millisecond_come_out_in_the_order_they_were_drawn() {
        let last = AtomicU64::new(0);
        let first = above_last(&last, id_at(MAY_2026_MS, 900));
        let second = above_last(&last, id_at(MAY_2026_MS, 5));
        let third = above_last(&last, id_at(MAY_2026_MS, 7));
        assert!(first < second && second < third, "{first} {second} {third}");
        // A later millisecond starts from its own time again.
        let later = id_at(MAY_2026_MS + 1, 3);
        assert_eq!(above_last(&last, later), later);
        // A clock set back does not make ids go back.
        assert!(above_last(&last, id_at(MAY_2026_MS - 1000, 0)) > later);
    }

    #[test]
    fn fresh_ids_differ() {
        let a = next_id();
        let b = next_id();
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_digit()));
    }
}
