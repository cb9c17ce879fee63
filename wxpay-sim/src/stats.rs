//! Counters behind `GET /sim/stats`. Tests read them to prove what did or did not happen,
//! e.g. that a duplicate notification caused no orderquery call.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::SimStats;

#[derive(Default)]
pub(crate) struct Stats {
    pub unifiedorder_calls: Counter,
    pub orderquery_calls: Counter,
    pub closeorder_calls: Counter,
    pub notifications_sent: Counter,
    pub notifications_acked: Counter,
    pub notifications_dropped: Counter,
}

#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn increment(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Stats {
    pub(crate) fn snapshot(&self) -> SimStats {
        SimStats {
            unifiedorder_calls: self.unifiedorder_calls.get(),
            orderquery_calls: self.orderquery_calls.get(),
            closeorder_calls: self.closeorder_calls.get(),
            notifications_sent: self.notifications_sent.get(),
            notifications_acked: self.notifications_acked.get(),
            notifications_dropped: self.notifications_dropped.get(),
        }
    }
}
