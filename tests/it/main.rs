//! The root crate's integration tests: property tests over the WeChat Pay v2 protocol code
//! (`paynotify::wxpay`) and the stable run of the fuzz targets (docs/FUZZING.md).
//!
//! Case counts are modest so `cargo test` stays quick; `PROPTEST_CASES=N` raises every
//! property to N cases for a long run (`--release` recommended).

// The fuzz targets' bodies, shared with the cargo-fuzz harness in fuzz/.
#[path = "../../fuzz/src/lib.rs"]
mod fuzz_targets;

mod fuzz;
mod known_issues;
mod replicas;
mod reply_props;
mod sign_props;
mod strategies;
mod xml_props;

use proptest::test_runner::Config;

/// `default` cases, or `PROPTEST_CASES` when set.
fn config(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        // Some properties skip inputs that do not apply (`prop_assume!`, filters); keep the
        // limits on those in proportion when PROPTEST_CASES is large.
        max_global_rejects: (cases / 4).max(1024),
        max_local_rejects: cases.max(65_536),
        ..Config::default()
    }
}
