//! `reply::is_success_ack` and `reply::fail_ack` (SPEC §1.4): only a document whose
//! `return_code` is exactly SUCCESS counts, and every FAIL reply parses and never does.

use paynotify::wxpay::{
    Fields,
    reply::{SUCCESS_ACK, fail_ack, is_success_ack},
    xml,
};
use proptest::{collection::vec, prelude::*};

use crate::{
    config,
    strategies::{field_value, fields, near_xml},
};

/// `return_code` values a sloppy check could take for SUCCESS.
fn return_code() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        3 => Just("SUCCESS".to_owned()),
        3 => proptest::sample::select(vec![
            "success", "Success", " SUCCESS", "SUCCESS ", "SUCCESS\n", "SUCCES", "SUCCESSFUL",
            "FAIL", "OK", "", "\u{feff}SUCCESS",
        ])
        .prop_map(str::to_owned),
        1 => field_value(),
    ])
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn only_return_code_success_is_a_success_ack(fields in fields(), code in return_code()) {
        let mut fields: Fields = fields;
        fields.remove("return_code");
        if let Some(code) = &code {
            fields.insert("return_code".into(), code.clone());
        }
        let expected = code.as_deref() == Some("SUCCESS");
        prop_assert_eq!(is_success_ack(xml::to_xml(&fields).as_bytes()), expected);
    }

    /// Whatever the bytes: a success ack parses, and its return_code is SUCCESS.
    #[test]
    fn a_success_ack_is_always_a_parsed_success(
        bytes in prop_oneof![near_xml(), vec(any::<u8>(), 0..256)],
    ) {
        let parsed = xml::parse(&bytes);
        let success = matches!(&parsed, Ok(fields) if fields.get("return_code").map(String::as_str) == Some("SUCCESS"));
        prop_assert_eq!(is_success_ack(&bytes), success);
    }

    /// A FAIL reply, whatever the reason (the gateway puts parser errors, which quote the
    /// input, in it), is well-formed, carries the reason cut to 128 characters, and is never
    /// taken for SUCCESS.
    #[test]
    fn a_fail_ack_is_never_a_success(
        reason in prop_oneof![field_value(), "\\PC{100,200}", Just(SUCCESS_ACK.to_owned())],
    ) {
        let ack = fail_ack(&reason);
        prop_assert!(!is_success_ack(ack.as_bytes()));
        let fields = xml::parse(ack.as_bytes()).unwrap();
        prop_assert_eq!(fields.len(), 2);
        prop_assert_eq!(fields["return_code"].as_str(), "FAIL");
        let expected: String = reason.chars().take(128).collect();
        prop_assert_eq!(&fields["return_msg"], &expected);
    }
}
