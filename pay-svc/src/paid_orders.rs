//! Orders this process has seen paid, and by which WeChat transaction, so a duplicate
//! notification (WeChat resends each one until it gets SUCCESS, often from several servers at
//! once) is answered without a call to order-svc.
//!
//! Safe to answer a notification from memory because "paid by transaction T" is final:
//! order-svc never un-pays an order or changes its transaction. (A database restored from a
//! backup can; reconciliation, which repairs exactly that, never consults this cache.)
//! Anything not in here (evicted, another replica saw it, pay-svc restarted) simply goes the
//! normal way through order-svc. Bounded
//! and least-recently-used, so memory stays flat however many orders are paid.

use std::{num::NonZeroUsize, sync::Mutex};

use lru::LruCache;

#[derive(Debug)]
pub struct PaidOrders {
    /// out_trade_no → transaction_id; `None` when disabled (capacity 0).
    paid: Option<Mutex<LruCache<String, String>>>,
}

impl PaidOrders {
    /// Remembers at most `capacity` orders; 0 remembers none.
    pub fn new(capacity: usize) -> PaidOrders {
        PaidOrders {
            paid: NonZeroUsize::new(capacity).map(|capacity| Mutex::new(LruCache::new(capacity))),
        }
    }

    /// Whether the order is known to be paid by exactly this transaction.
    pub fn paid_by(&self, out_trade_no: &str, transaction_id: &str) -> bool {
        self.with(|paid| {
            paid.get(out_trade_no)
                .is_some_and(|known| known == transaction_id)
        })
        .unwrap_or(false)
    }

    /// The order is paid by `transaction_id` (order-svc said so).
    pub fn remember(&self, out_trade_no: &str, transaction_id: &str) {
        if transaction_id.is_empty() {
            return;
        }
        self.with(|paid| paid.put(out_trade_no.to_owned(), transaction_id.to_owned()));
    }

    fn with<T>(&self, f: impl FnOnce(&mut LruCache<String, String>) -> T) -> Option<T> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters (each entry is final), so a poisoned lock is used as it is.
        let mut paid = self
            .paid
            .as_ref()?
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Some(f(&mut paid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_for_the_transaction_that_paid() {
        let paid = PaidOrders::new(2);
        paid.remember("o1", "t1");
        assert!(paid.paid_by("o1", "t1"));
        assert!(!paid.paid_by("o1", "t2"));
        assert!(!paid.paid_by("o2", "t1"));
        paid.remember("o2", "");
        assert!(!paid.paid_by("o2", ""));
    }

    #[test]
    fn is_bounded_and_can_be_off() {
        let paid = PaidOrders::new(2);
        for order in ["o1", "o2", "o3"] {
            paid.remember(order, "t");
        }
        assert!(!paid.paid_by("o1", "t"));
        assert!(paid.paid_by("o3", "t"));
        let off = PaidOrders::new(0);
        off.remember("o1", "t");
        assert!(!off.paid_by("o1", "t"));
    }
}
