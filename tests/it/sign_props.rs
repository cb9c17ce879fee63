//! `sign::sign_fields` and `sign::verify` (SPEC §2): what we sign verifies, under either
//! algorithm and after a trip through XML; any one change to a signed message, or another key,
//! does not; and an empty field is the same as an absent one.

use paynotify::wxpay::{
    Fields,
    sign::{self, SignError, SignType},
    xml,
};
use proptest::{prelude::*, sample::Index};

use crate::{
    config,
    strategies::{field_name, field_value, fields, fresh_name, non_empty_value},
};

fn sign_type() -> impl Strategy<Value = SignType> {
    prop_oneof![Just(SignType::Md5), Just(SignType::HmacSha256)]
}

/// The keys WeChat issues are 32 alphanumerics; the code must not care.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[A-Za-z0-9]{32}", 1 => "\\PC{0,40}"]
}

/// Fields with whatever `sign_type` a message we sign may carry: none, empty or a valid one
/// (an unknown one is refused by design, see `an_unknown_sign_type_is_refused`).
fn message() -> impl Strategy<Value = Fields> {
    (
        fields(),
        proptest::option::of(proptest::sample::select(vec!["", "MD5", "HMAC-SHA256"])),
    )
        .prop_map(|(mut fields, declared)| {
            fields.remove("sign_type");
            if let Some(declared) = declared {
                fields.insert("sign_type".into(), declared.into());
            }
            fields
        })
}

fn signed(mut fields: Fields, key: &str, sign_type: SignType) -> Fields {
    sign::sign_fields(&mut fields, key, sign_type);
    fields
}

/// The name of the `which`-th field other than `sign`, if any.
fn pick(fields: &Fields, which: Index, keep: impl Fn(&str, &str) -> bool) -> Option<String> {
    let names: Vec<&String> = fields
        .iter()
        .filter(|(name, value)| name.as_str() != "sign" && keep(name, value))
        .map(|(name, _)| name)
        .collect();
    (!names.is_empty()).then(|| names[which.index(names.len())].clone())
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn what_we_sign_verifies(fields in message(), key in key(), sign_type in sign_type()) {
        let signed = signed(fields, &key, sign_type);
        prop_assert_eq!(sign::verify(&signed, &key), Ok(sign_type));
        // WeChat's hex is upper case; lower case is accepted too.
        let mut lower = signed.clone();
        lower.insert("sign".into(), signed["sign"].to_ascii_lowercase());
        prop_assert_eq!(sign::verify(&lower, &key), Ok(sign_type));
    }

    #[test]
    fn what_we_sign_verifies_after_a_trip_through_xml(
        fields in message(), key in key(), sign_type in sign_type(),
    ) {
        let signed = signed(fields, &key, sign_type);
        let received = xml::parse(xml::to_xml(&signed).as_bytes()).unwrap();
        prop_assert_eq!(sign::verify(&received, &key), Ok(sign_type));
    }

    #[test]
    fn changing_one_value_breaks_the_signature(
        fields in message(), key in key(), sign_type in sign_type(),
        which in any::<Index>(), new in field_value(),
    ) {
        let mut tampered = signed(fields, &key, sign_type);
        let name = pick(&tampered, which, |_, value| value != new && !(value.is_empty() && new.is_empty()));
        prop_assume!(name.is_some());
        tampered.insert(name.unwrap(), new);
        prop_assert!(sign::verify(&tampered, &key).is_err());
    }

    #[test]
    fn adding_a_non_empty_field_breaks_the_signature(
        fields in message(), key in key(), sign_type in sign_type(),
        name in field_name(), value in non_empty_value(),
    ) {
        let mut tampered = signed(fields, &key, sign_type);
        // A name not there yet (an empty field counts as not there).
        tampered.retain(|_, value| !value.is_empty());
        let name = fresh_name(&tampered, &name);
        tampered.insert(name, value);
        prop_assert!(sign::verify(&tampered, &key).is_err());
    }

    #[test]
    fn removing_a_non_empty_field_breaks_the_signature(
        fields in message(), key in key(), sign_type in sign_type(), which in any::<Index>(),
    ) {
        let mut tampered = signed(fields, &key, sign_type);
        let name = pick(&tampered, which, |_, value| !value.is_empty());
        prop_assume!(name.is_some());
        tampered.remove(&name.unwrap());
        prop_assert!(sign::verify(&tampered, &key).is_err());
    }

    #[test]
    fn another_key_or_another_signature_is_refused(
        fields in message(), key in key(), other_key in key(), sign_type in sign_type(),
        other_sign in "[0-9A-F]{32}|[0-9A-F]{64}|\\PC{0,70}",
    ) {
        let signed = signed(fields, &key, sign_type);
        if other_key != key {
            prop_assert!(sign::verify(&signed, &other_key).is_err());
        }
        let mut forged = signed.clone();
        prop_assume!(!other_sign.eq_ignore_ascii_case(&signed["sign"]));
        forged.insert("sign".into(), other_sign);
        prop_assert!(sign::verify(&forged, &key).is_err());
        forged.remove("sign");
        prop_assert_eq!(sign::verify(&forged, &key), Err(SignError::MissingSign));
    }

    /// SPEC §2.1 and V2-NOTIFY-3: a present-but-empty field signs as if absent, so adding or
    /// dropping empty fields never breaks a signature.
    #[test]
    fn an_empty_field_is_the_same_as_an_absent_one(
        fields in message(), key in key(), sign_type in sign_type(), name in field_name(),
    ) {
        let mut received = signed(fields.clone(), &key, sign_type);
        let name = fresh_name(&received, &name);
        let mut with_empty = fields.clone();
        with_empty.insert(name.clone(), String::new());
        prop_assert_eq!(sign::sign(&with_empty, &key, sign_type), sign::sign(&fields, &key, sign_type));

        received.insert(name, String::new());
        prop_assert_eq!(sign::verify(&received, &key), Ok(sign_type));
    }

    #[test]
    fn an_unknown_sign_type_is_refused(
        fields in fields(), key in key(), sign_type in sign_type(),
        declared in "\\PC{1,12}".prop_filter("unknown", |d| d != "MD5" && d != "HMAC-SHA256"),
    ) {
        let mut fields = fields;
        fields.insert("sign_type".into(), declared.clone());
        fields.insert("sign".into(), sign::sign(&fields, &key, sign_type));
        prop_assert_eq!(sign::verify(&fields, &key), Err(SignError::UnsupportedSignType(declared)));
    }

    /// verify() never panics, whatever the fields, `sign` and `sign_type` hold.
    #[test]
    fn verify_never_panics(fields in fields(), key in key()) {
        let _ = sign::verify(&fields, &key);
    }
}
