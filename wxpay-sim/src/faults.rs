//! Fault injection: the unreliable sides of WeChat Pay that a payment-callback system must
//! survive. `orderquery` can be slow or fail (SYSTEMERROR, HTTP 500, no answer); notifications
//! can be lost, duplicated "from several servers" (SPEC §1.5), or arrive out of order; and
//! both can carry a field WeChat added after the receiver was written (SPEC §1.2).
//! The settings are read at start and replaced at run time through `PUT /sim/faults`, so a
//! test can switch one on against a simulator it did not configure.

use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use serde::{Deserialize, Serialize};

/// How a failing `orderquery` fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// A signed answer with `result_code` FAIL and `err_code` SYSTEMERROR.
    #[value(name = "systemerror")]
    SystemError,
    /// HTTP 500 with no WeChat body.
    #[value(name = "http500")]
    Http500,
    /// No answer: the request hangs until the client gives up (or the simulator stops, when
    /// the connection is dropped without a response).
    #[value(name = "hang")]
    Hang,
}

/// The fault settings. Every field has a neutral default, so a JSON body may name only the
/// faults it wants; `PUT /sim/faults` replaces the whole set.
#[derive(Clone, Debug, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Delay added to every orderquery answer, in real milliseconds.
    #[arg(long, env = "SIM_ORDERQUERY_LATENCY_MS", default_value_t = 0)]
    pub orderquery_latency_ms: u64,
    /// Share of orderquery calls (0.0–1.0) that fail.
    #[arg(long, env = "SIM_ORDERQUERY_FAIL_RATIO", default_value_t = 0.0)]
    pub orderquery_fail_ratio: f64,
    /// How failing orderquery calls fail, picked uniformly from this list for each failure
    /// (repeat a mode to weight it).
    #[arg(
        long,
        env = "SIM_ORDERQUERY_FAIL_MODES",
        value_enum,
        value_delimiter = ',',
        default_value = "systemerror,http500,hang"
    )]
    pub orderquery_fail_modes: Vec<FailMode>,
    /// Share of notification attempts (0.0–1.0) that are dropped: not sent, recorded as failed,
    /// so the retry schedule goes on.
    #[arg(long, env = "SIM_NOTIFY_DROP_RATIO", default_value_t = 0.0)]
    pub notify_drop_ratio: f64,
    /// How many copies of each notification attempt are sent concurrently (1 = no duplicates).
    #[arg(long, env = "SIM_NOTIFY_DUPLICATES", default_value_t = 1)]
    pub notify_duplicates: u32,
    /// Delay each notification copy by a random extra time, so notifications arrive out of
    /// order.
    #[arg(long, env = "SIM_NOTIFY_SHUFFLE", default_value_t = false)]
    pub notify_shuffle: bool,
    /// The upper bound of that extra delay, in real milliseconds.
    #[arg(long, env = "SIM_NOTIFY_SHUFFLE_MAX_MS", default_value_t = 1000)]
    pub notify_shuffle_max_ms: u64,
    /// Add a field no receiver knows (`zz_new_field`), signed like the rest, to every
    /// notification and orderquery answer: WeChat may add fields at any time, and a receiver
    /// that verifies only the fields it knows then refuses genuine messages.
    #[arg(long, env = "SIM_UNKNOWN_FIELD", default_value_t = false)]
    pub unknown_field: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            orderquery_latency_ms: 0,
            orderquery_fail_ratio: 0.0,
            orderquery_fail_modes: vec![FailMode::SystemError, FailMode::Http500, FailMode::Hang],
            notify_drop_ratio: 0.0,
            notify_duplicates: 1,
            notify_shuffle: false,
            notify_shuffle_max_ms: 1000,
            unknown_field: false,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FaultsError {
    #[error("{name} must be between 0.0 and 1.0, got {value}")]
    Ratio { name: &'static str, value: f64 },
    #[error("orderquery_fail_modes must not be empty while orderquery_fail_ratio is above 0")]
    NoFailModes,
    #[error("notify_duplicates must be at most {max}, got {value}")]
    TooManyDuplicates { value: u32, max: u32 },
}

/// More concurrent copies than this would only test the receiver's socket limits.
pub const MAX_DUPLICATES: u32 = 64;

impl Faults {
    /// Checks the settings, naming the bad one.
    pub fn validate(&self) -> Result<(), FaultsError> {
        for (name, value) in [
            ("orderquery_fail_ratio", self.orderquery_fail_ratio),
            ("notify_drop_ratio", self.notify_drop_ratio),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(FaultsError::Ratio { name, value });
            }
        }
        if self.orderquery_fail_ratio > 0.0 && self.orderquery_fail_modes.is_empty() {
            return Err(FaultsError::NoFailModes);
        }
        if self.notify_duplicates > MAX_DUPLICATES {
            return Err(FaultsError::TooManyDuplicates {
                value: self.notify_duplicates,
                max: MAX_DUPLICATES,
            });
        }
        Ok(())
    }
}

/// The live fault settings and the dice that apply them.
pub(crate) struct FaultInjector {
    faults: RwLock<Faults>,
    rng: Mutex<StdRng>,
}

impl FaultInjector {
    /// `seed` makes the dice reproducible; without it they are seeded from the OS.
    pub(crate) fn new(faults: Faults, seed: Option<u64>) -> Self {
        let rng = match seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        FaultInjector {
            faults: RwLock::new(faults),
            rng: Mutex::new(rng),
        }
    }

    pub(crate) fn get(&self) -> Faults {
        self.faults.read().clone()
    }

    pub(crate) fn set(&self, faults: Faults) -> Result<(), FaultsError> {
        faults.validate()?;
        *self.faults.write() = faults;
        Ok(())
    }

    pub(crate) fn orderquery_latency(&self) -> Duration {
        Duration::from_millis(self.faults.read().orderquery_latency_ms)
    }

    /// Whether this orderquery call fails, and how.
    pub(crate) fn orderquery_failure(&self) -> Option<FailMode> {
        let faults = self.faults.read();
        let mut rng = self.rng.lock();
        if !roll(&mut rng, faults.orderquery_fail_ratio) {
            return None;
        }
        faults.orderquery_fail_modes.choose(&mut *rng).copied()
    }

    /// Whether this notification attempt is dropped.
    pub(crate) fn drop_notification(&self) -> bool {
        let ratio = self.faults.read().notify_drop_ratio;
        roll(&mut self.rng.lock(), ratio)
    }

    /// How many copies of a notification attempt to send.
    pub(crate) fn copies(&self) -> u32 {
        self.faults.read().notify_duplicates.max(1)
    }

    /// Whether notifications and orderquery answers carry [`crate::notification::UNKNOWN_FIELD`].
    pub(crate) fn unknown_field(&self) -> bool {
        self.faults.read().unknown_field
    }

    /// The extra delay before one notification copy is sent.
    pub(crate) fn shuffle_delay(&self) -> Duration {
        let faults = self.faults.read();
        if !faults.notify_shuffle || faults.notify_shuffle_max_ms == 0 {
            return Duration::ZERO;
        }
        let ms = self
            .rng
            .lock()
            .random_range(0..=faults.notify_shuffle_max_ms);
        Duration::from_millis(ms)
    }
}

/// True with probability `ratio`; exact at 0 and 1, so tests at those values are deterministic.
fn roll(rng: &mut StdRng, ratio: f64) -> bool {
    if ratio <= 0.0 {
        false
    } else if ratio >= 1.0 {
        true
    } else {
        rng.random_bool(ratio)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_inject_nothing() {
        let injector = FaultInjector::new(Faults::default(), Some(1));
        for _ in 0..100 {
            assert_eq!(injector.orderquery_failure(), None);
            assert!(!injector.drop_notification());
            assert_eq!(injector.shuffle_delay(), Duration::ZERO);
        }
        assert_eq!(injector.copies(), 1);
        assert_eq!(injector.orderquery_latency(), Duration::ZERO);
        assert!(!injector.unknown_field());
    }

    #[test]
    fn ratio_one_always_fails_with_a_listed_mode() {
        let faults = Faults {
            orderquery_fail_ratio: 1.0,
            orderquery_fail_modes: vec![FailMode::Http500],
            notify_drop_ratio: 1.0,
            ..Faults::default()
        };
        let injector = FaultInjector::new(faults, None);
        for _ in 0..100 {
            assert_eq!(injector.orderquery_failure(), Some(FailMode::Http500));
            assert!(injector.drop_notification());
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_faults() {
        let faults = Faults {
            orderquery_fail_ratio: 0.5,
            notify_drop_ratio: 0.5,
            notify_shuffle: true,
            ..Faults::default()
        };
        let run = |seed| {
            let injector = FaultInjector::new(faults.clone(), Some(seed));
            (0..50)
                .map(|_| {
                    (
                        injector.orderquery_failure(),
                        injector.drop_notification(),
                        injector.shuffle_delay(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn a_half_ratio_fails_about_half_the_time() {
        let faults = Faults {
            orderquery_fail_ratio: 0.5,
            ..Faults::default()
        };
        let injector = FaultInjector::new(faults, Some(42));
        let failures = (0..1000)
            .filter(|_| injector.orderquery_failure().is_some())
            .count();
        assert!((400..600).contains(&failures), "{failures}");
    }

    #[test]
    fn json_may_name_only_some_faults_and_bad_values_are_refused() {
        let faults: Faults = serde_json::from_str(r#"{"notify_duplicates": 3}"#).unwrap();
        assert_eq!(faults.notify_duplicates, 3);
        assert!(!faults.unknown_field);
        let faults: Faults = serde_json::from_str(r#"{"unknown_field": true}"#).unwrap();
        assert!(faults.unknown_field);
        assert_eq!(faults.orderquery_fail_ratio, 0.0);
        assert!(serde_json::from_str::<Faults>(r#"{"notify_dupes": 3}"#).is_err());
        let modes: Faults =
            serde_json::from_str(r#"{"orderquery_fail_modes": ["hang", "systemerror"]}"#).unwrap();
        assert_eq!(
            modes.orderquery_fail_modes,
            [FailMode::Hang, FailMode::SystemError]
        );

        let injector = FaultInjector::new(Faults::default(), None);
        let bad = Faults {
            notify_drop_ratio: 1.5,
            ..Faults::default()
        };
        assert_eq!(
            injector.set(bad),
            Err(FaultsError::Ratio {
                name: "notify_drop_ratio",
                value: 1.5
            })
        );
        let bad = Faults {
            orderquery_fail_ratio: 0.1,
            orderquery_fail_modes: vec![],
            ..Faults::default()
        };
        assert_eq!(injector.set(bad), Err(FaultsError::NoFailModes));
        assert_eq!(injector.get(), Faults::default());
    }
}
