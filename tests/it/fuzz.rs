//! The fuzz targets on stable: the bounded run that CI does, and replay of saved inputs.
//!
//! `cargo fuzz` (nightly, docs/FUZZING.md) drives the same functions with coverage feedback
//! for as long as one likes; here they get the seed corpus, inputs named in `FUZZ_REPLAY`,
//! generated near-XML and notifications, and byte-level mutations of the seeds.

use std::path::{Path, PathBuf};

use pay_svc::notification::{Screening, screen};
use paynotify::{
    proto::pay::v1::NotifyOutcome,
    wxpay::{
        Fields,
        sign::{self, SignType},
        xml,
    },
};
use proptest::{collection::vec, prelude::*};

use crate::{
    config,
    fuzz_targets::{API_KEY, merchant, notify_verify, xml_parse},
    strategies::{mutated, near_xml, notification},
};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files in `dir`, or `dir` itself when it is a file.
fn inputs(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .path()
        })
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn seeds() -> Vec<Vec<u8>> {
    inputs(&fuzz_dir().join("seeds"))
        .iter()
        .map(|path| read(path))
        .collect()
}

/// Both targets on every seed, and on every file or directory in `FUZZ_REPLAY` (a list
/// separated by `:`), e.g. a crash artifact from a `cargo fuzz` run, or a whole corpus.
#[test]
fn targets_accept_the_seed_corpus_and_replayed_inputs() {
    let mut paths = inputs(&fuzz_dir().join("seeds"));
    assert!(paths.len() >= 10, "the seed corpus is missing");
    if let Ok(replay) = std::env::var("FUZZ_REPLAY") {
        for path in replay.split(':').filter(|p| !p.is_empty()) {
            paths.extend(inputs(Path::new(path)));
        }
    }
    for path in paths {
        let data = read(&path);
        eprintln!("{}", path.display());
        xml_parse(&data);
        notify_verify(&data);
    }
}

/// The seeds hold authentic payments for the fixed merchant, so the targets reach the claim
/// checks rather than stopping at the signature.
#[test]
fn seed_payments_are_claims() {
    for name in ["paid_md5.xml", "paid_hmac.xml"] {
        let data = std::fs::read(fuzz_dir().join("seeds").join(name)).unwrap();
        let fields = xml::parse(&data).unwrap();
        assert!(
            matches!(screen(&fields, &merchant()), Screening::Claim(_)),
            "{name}"
        );
    }
}

fn sign_as(fields: &mut Fields, signer: u8) {
    match signer {
        0 => sign::sign_fields(fields, API_KEY, SignType::Md5),
        1 => sign::sign_fields(fields, API_KEY, SignType::HmacSha256),
        2 => sign::sign_fields(fields, "another-key-another-key-another-k", SignType::Md5),
        _ => {}
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn xml_parse_target_on_near_xml(bytes in near_xml()) {
        xml_parse(&bytes);
    }

    #[test]
    fn notify_verify_target_on_near_xml(bytes in near_xml()) {
        notify_verify(&bytes);
    }

    #[test]
    fn targets_on_mutated_seeds(
        (seed, bytes) in proptest::sample::select(seeds())
            .prop_flat_map(|seed| (Just(seed.clone()), mutated(seed))),
    ) {
        let _ = seed;
        xml_parse(&bytes);
        notify_verify(&bytes);
    }

    #[test]
    fn targets_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..512)) {
        xml_parse(&bytes);
        notify_verify(&bytes);
    }

    /// Notifications for our merchant or another, with good and bad payment fields, signed
    /// with our key (either algorithm), another key or not at all.
    #[test]
    fn notify_verify_target_on_notifications(mut fields in notification(), signer in 0..4u8) {
        sign_as(&mut fields, signer);
        notify_verify(xml::to_xml(&fields).as_bytes());
        // ConfirmPayment's screening: no signature of ours, no claim and nothing past step 2.
        if signer >= 2 && fields.get("return_code").map(String::as_str) == Some("SUCCESS") {
            match screen(&fields, &merchant()) {
                Screening::Decided(verdict) => prop_assert!(
                    matches!(verdict.outcome, NotifyOutcome::BadSignature | NotifyOutcome::WrongMerchant),
                    "{:?}", verdict
                ),
                Screening::Claim(claim) => prop_assert!(false, "unsigned claim {:?}", claim),
            }
        }
    }
}
