//! A verdict about one payment claim: what happened (`NotifyOutcome`), whether WeChat may stop
//! resending (`acknowledge`, derived from the outcome so the two never disagree), and a short
//! reason. Every path that decides something — the notification checks, order-svc's answer,
//! reconciliation — ends in one of these, and the security-relevant ones are logged here under
//! stable event names that alerting can match on.

use paynotify::{
    loggable,
    proto::pay::v1::{ConfirmPaymentResponse, NotifyOutcome},
};

/// The most of a reason a log line shows. The reasons built from a notification's text bound
/// and escape it where they are built; this holds for every other path too.
const MAX_LOGGED_REASON_CHARS: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: NotifyOutcome,
    pub reason: String,
}

/// Where a claim came from, for the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Notification,
    Reconciliation,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Notification => "notification",
            Source::Reconciliation => "reconciliation",
        }
    }
}

impl Verdict {
    pub fn new(outcome: NotifyOutcome, reason: impl Into<String>) -> Verdict {
        Verdict {
            outcome,
            reason: reason.into(),
        }
    }

    /// True only when the notification is handled for good (pay.proto).
    pub fn acknowledge(&self) -> bool {
        matches!(
            self.outcome,
            NotifyOutcome::Paid
                | NotifyOutcome::Duplicate
                | NotifyOutcome::NotPaid
                | NotifyOutcome::ReturnFail
        )
    }

    /// The stable event name of outcomes someone should look at, if this is one.
    pub fn security_event(&self) -> Option<&'static str> {
        match self.outcome {
            NotifyOutcome::BadSignature => Some("notify.bad_signature"),
            NotifyOutcome::WrongMerchant => Some("notify.wrong_merchant"),
            NotifyOutcome::AmountMismatch => Some("notify.amount_mismatch"),
            NotifyOutcome::PaymentConflict => Some("notify.payment_conflict"),
            // Authentic, yet WeChat's own record does not back it: a replay, or a message
            // signed with a leaked key.
            NotifyOutcome::NotConfirmed => Some("notify.not_confirmed"),
            // Signed with our key for an order order-svc does not have: a database restored
            // without its latest orders, an order deleted, another system on the same merchant
            // account (or the pre-launch check). Answered FAIL, so WeChat resends for about
            // 24 hours and then stops: a buyer's money with no order, unless someone looks.
            NotifyOutcome::UnknownOrder => Some("notify.unknown_order"),
            _ => None,
        }
    }

    /// Logs the verdict: WARN with its event name when security-relevant, INFO otherwise.
    /// Only the verdict's own reason is logged, never message fields such as `sign`; it may
    /// repeat text from the notification, so it is bounded and escaped to stay one line.
    pub fn log(&self, source: Source, out_trade_no: &str, transaction_id: &str) {
        let outcome = self.outcome.as_str_name();
        let reason = loggable(&self.reason, MAX_LOGGED_REASON_CHARS);
        match self.security_event() {
            Some(event) => tracing::warn!(
                event,
                source = source.as_str(),
                out_trade_no,
                transaction_id,
                outcome,
                %reason,
                "payment claim rejected"
            ),
            None => tracing::info!(
                source = source.as_str(),
                out_trade_no,
                transaction_id,
                outcome,
                acknowledge = self.acknowledge(),
                %reason,
                "payment claim decided"
            ),
        }
    }

    pub fn into_response(self, out_trade_no: &str, transaction_id: &str) -> ConfirmPaymentResponse {
        ConfirmPaymentResponse {
            outcome: self.outcome.into(),
            acknowledge: self.acknowledge(),
            reason: self.reason,
            out_trade_no: out_trade_no.to_owned(),
            transaction_id: transaction_id.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_final_outcomes_are_acknowledged() {
        let acked = [
            NotifyOutcome::Paid,
            NotifyOutcome::Duplicate,
            NotifyOutcome::NotPaid,
            NotifyOutcome::ReturnFail,
        ];
        for outcome in [
            NotifyOutcome::Unspecified,
            NotifyOutcome::Paid,
            NotifyOutcome::Duplicate,
            NotifyOutcome::NotPaid,
            NotifyOutcome::ReturnFail,
            NotifyOutcome::BadSignature,
            NotifyOutcome::WrongMerchant,
            NotifyOutcome::AmountMismatch,
            NotifyOutcome::UnknownOrder,
            NotifyOutcome::NotConfirmed,
            NotifyOutcome::PaymentConflict,
            NotifyOutcome::Malformed,
        ] {
            let verdict = Verdict::new(outcome, "r");
            assert_eq!(
                verdict.acknowledge(),
                acked.contains(&outcome),
                "{outcome:?}"
            );
            let response = verdict.into_response("o1", "t1");
            assert_eq!(response.outcome(), outcome);
        }
    }

    /// The reason as the text formatter writes it: a `%` field is written with `Display`.
    fn logged_reasons(verdict: &Verdict) -> Vec<String> {
        use std::sync::{Arc, Mutex};
        use tracing::{Event, Metadata, field::Field, span};

        #[derive(Default)]
        struct Reasons(Arc<Mutex<Vec<String>>>);
        impl tracing::Subscriber for Reasons {
            fn enabled(&self, _: &Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
                span::Id::from_u64(1)
            }
            fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
            fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
            fn event(&self, event: &Event<'_>) {
                event.record(&mut |field: &Field, value: &dyn std::fmt::Debug| {
                    if field.name() == "reason" {
                        self.0.lock().unwrap().push(format!("{value:?}"));
                    }
                });
            }
            fn enter(&self, _: &span::Id) {}
            fn exit(&self, _: &span::Id) {}
        }

        let reasons = Reasons::default();
        let seen = Arc::clone(&reasons.0);
        tracing::subscriber::with_default(reasons, || {
            verdict.log(Source::Notification, "o1", "t1");
        });
        seen.lock().unwrap().clone()
    }

    #[test]
    fn a_logged_reason_is_one_bounded_line() {
        let forged = "ok\n2025-01-01T00:00:00Z WARN pay_svc: event=\"notify.payment_conflict\"";
        for outcome in [NotifyOutcome::ReturnFail, NotifyOutcome::PaymentConflict] {
            let logged = logged_reasons(&Verdict::new(outcome, forged));
            assert_eq!(logged, [forged.replace('\n', "\\n")], "{outcome:?}");
            let logged = logged_reasons(&Verdict::new(outcome, "\r\u{1b}x".repeat(10_000)));
            assert_eq!(logged.len(), 1);
            assert!(logged[0].chars().count() <= MAX_LOGGED_REASON_CHARS);
            assert!(!logged[0].chars().any(char::is_control), "{}", logged[0]);
        }
    }

    #[test]
    fn security_events_have_stable_names() {
        assert_eq!(
            Verdict::new(NotifyOutcome::BadSignature, "").security_event(),
            Some("notify.bad_signature")
        );
        assert_eq!(
            Verdict::new(NotifyOutcome::UnknownOrder, "").security_event(),
            Some("notify.unknown_order")
        );
        assert_eq!(
            Verdict::new(NotifyOutcome::Duplicate, "").security_event(),
            None
        );
    }
}
