//! `xml::parse` and `xml::to_xml`: no panic on any input, a lossless round trip for every
//! message we could send, and each kind of hostile or broken input refused (SPEC §1.7, §7).

use paynotify::wxpay::{
    Fields,
    xml::{self, MAX_BODY_BYTES, XmlError},
};
use proptest::{collection::vec, prelude::*, sample::Index};

use crate::{
    config,
    strategies::{
        DOCTYPES, cdata, escaped, field_name, field_value, fields, near_xml, non_empty_fields,
    },
};

/// A document for `fields` in pieces, each whole markup: `<xml>`, then per field its start tag,
/// its value in one of the spellings WeChat uses, its end tag; then `</xml>`.
fn pieces(fields: &Fields, spellings: &[Spelling]) -> Vec<String> {
    let mut pieces = vec!["<xml>".to_owned()];
    for (i, (name, value)) in fields.iter().enumerate() {
        pieces.push(format!("<{name}>"));
        pieces.extend(spellings[i % spellings.len()].spell(value));
        pieces.push(format!("</{name}>"));
    }
    pieces.push("</xml>".to_owned());
    pieces
}

/// Ways to write one value that all mean the same text.
#[derive(Clone, Copy, Debug)]
enum Spelling {
    Cdata,
    Escaped,
    /// Character references for everything but ASCII letters and digits.
    CharRefs,
    /// Half escaped text, half CDATA.
    Mixed,
}

impl Spelling {
    fn spell(self, value: &str) -> Vec<String> {
        match self {
            Spelling::Cdata => vec![cdata(value)],
            Spelling::Escaped => vec![escaped(value)],
            Spelling::CharRefs => vec![
                value
                    .chars()
                    .map(|c| match c {
                        'a'..='z' | 'A'..='Z' | '0'..='9' => c.to_string(),
                        _ => format!("&#x{:x};", u32::from(c)),
                    })
                    .collect(),
            ],
            Spelling::Mixed => {
                let mid = value
                    .char_indices()
                    .map(|(i, _)| i)
                    .nth(value.chars().count() / 2)
                    .unwrap_or(value.len());
                vec![escaped(&value[..mid]), cdata(&value[mid..])]
            }
        }
    }
}

fn spelling() -> impl Strategy<Value = Spelling> {
    prop_oneof![
        Just(Spelling::Cdata),
        Just(Spelling::Escaped),
        Just(Spelling::CharRefs),
        Just(Spelling::Mixed),
    ]
}

/// Layout between pieces that must not change the meaning.
fn separator() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec!["", "", "\n", "\n  ", "\r\n\t", "<!-- note -->"])
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..1024)) {
        let _ = xml::parse(&bytes);
    }

    #[test]
    fn parse_never_panics_on_near_xml(bytes in near_xml()) {
        // An accepted document must also be one `to_xml` can reproduce.
        if let Ok(fields) = xml::parse(&bytes) {
            crate::fuzz_targets::assert_round_trips(&fields);
        }
    }

    #[test]
    fn to_xml_then_parse_gives_the_same_fields(fields in fields()) {
        let serialised = xml::to_xml(&fields);
        prop_assert_eq!(xml::parse(serialised.as_bytes()), Ok(fields));
    }

    /// CDATA, escaped text, character references, a mix, with indentation, comments and an
    /// XML declaration around: all the same message (SPEC §7.5).
    #[test]
    fn every_spelling_of_a_message_parses_to_the_same_fields(
        fields in fields(),
        spellings in vec(spelling(), 1..4),
        separators in vec(separator(), 64),
        declaration in any::<bool>(),
    ) {
        let mut body = String::new();
        if declaration {
            body.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        }
        let pieces = pieces(&fields, &spellings);
        let last = pieces.len() - 1;
        for (i, piece) in pieces.iter().enumerate() {
            body.push_str(piece);
            // Only between fields (after `<xml>` and after each end tag but the root's):
            // inside a value, layout would be part of the value.
            let between_fields = i == 0 || (piece.starts_with("</") && i != last);
            if between_fields {
                body.push_str(separators[i % separators.len()]);
            }
        }
        prop_assert_eq!(xml::parse(body.as_bytes()), Ok(fields), "{}", body);
    }

    #[test]
    fn a_repeated_field_is_refused(
        fields in non_empty_fields(),
        which in any::<Index>(),
        again in field_value(),
    ) {
        let (name, _) = fields.iter().nth(which.index(fields.len())).map(|(n, v)| (n.clone(), v.clone())).unwrap();
        let serialised = xml::to_xml(&fields);
        let body = format!(
            "{}<{name}>{}</{name}></xml>",
            serialised.strip_suffix("</xml>").unwrap(),
            cdata(&again),
        );
        prop_assert_eq!(xml::parse(body.as_bytes()), Err(XmlError::DuplicateField(name)));
    }

    #[test]
    fn a_nested_element_is_refused(
        fields in fields(),
        outer in field_name(),
        inner in field_name(),
        value in field_value(),
        empty in any::<bool>(),
    ) {
        let child = if empty { format!("<{inner}/>") } else { format!("<{inner}>{}</{inner}>", cdata(&value)) };
        let body = xml::to_xml(&fields).replacen("<xml>", &format!("<xml><{outer}>{child}</{outer}>"), 1);
        prop_assert_eq!(xml::parse(body.as_bytes()), Err(XmlError::NestedElement(outer)));
    }

    /// A DOCTYPE anywhere markup can stand — before the root, between fields, inside a value
    /// between its text pieces, after the root — is refused as such (SPEC §7.1).
    #[test]
    fn a_doctype_anywhere_in_the_markup_is_refused(
        fields in fields(),
        spellings in vec(spelling(), 1..4),
        doctype in proptest::sample::select(DOCTYPES),
        at in any::<Index>(),
    ) {
        let mut pieces = pieces(&fields, &spellings);
        pieces.insert(at.index(pieces.len() + 1), doctype.to_owned());
        let body = pieces.concat();
        prop_assert_eq!(xml::parse(body.as_bytes()), Err(XmlError::Doctype), "{}", body);
    }

    #[test]
    fn an_undeclared_entity_is_refused(
        fields in fields(),
        name in "[A-Za-z_][A-Za-z0-9_]{0,8}"
            .prop_filter("not predefined", |n| !["lt", "gt", "amp", "apos", "quot"].contains(&n.as_str())),
        field in field_name(),
    ) {
        let mut fields = fields;
        fields.remove(&field);
        let body = xml::to_xml(&fields).replacen("<xml>", &format!("<xml><{field}>x&{name};y</{field}>"), 1);
        prop_assert_eq!(xml::parse(body.as_bytes()), Err(XmlError::UnknownEntity(name)));
    }

    /// A body cut short anywhere is never taken for a shorter message.
    #[test]
    fn a_truncated_message_is_refused(fields in fields(), at in any::<Index>()) {
        let serialised = xml::to_xml(&fields);
        let cut = at.index(serialised.len());
        prop_assert!(xml::parse(&serialised.as_bytes()[..cut]).is_err(), "{:?}", &serialised[..cut]);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused(
        fields in fields(),
        bad in proptest::sample::select(vec![&b"\xff"[..], b"\xc3", b"\xe4\xb8", b"\xed\xa0\x80", b"\xd6\xa7\xb8\xb6"]),
        field in field_name(),
        cdata in any::<bool>(),
    ) {
        let mut fields = fields;
        fields.remove(&field);
        let (open, close) = if cdata { ("<![CDATA[", "]]>") } else { ("", "") };
        let mut body = format!("<xml><{field}>{open}").into_bytes();
        body.extend_from_slice(bad);
        body.extend_from_slice(format!("{close}</{field}>").as_bytes());
        body.extend_from_slice(&xml::to_xml(&fields).as_bytes()[5..]);
        prop_assert_eq!(xml::parse(&body), Err(XmlError::NotUtf8));
    }
}

proptest! {
    // Bodies of 64 KiB and more: fewer cases.
    #![proptest_config(config(24))]

    /// Over 64 KiB is refused before anything else is looked at, whatever the bytes.
    #[test]
    fn a_body_over_the_limit_is_always_too_large(
        pattern in prop_oneof![
            vec(any::<u8>(), 1..64),
            fields().prop_map(|f| xml::to_xml(&f).into_bytes()),
            Just(b"<!DOCTYPE x [<!ENTITY a \"b\">]>".to_vec()),
        ],
        excess in 1..4096usize,
    ) {
        let len = MAX_BODY_BYTES + excess;
        let body: Vec<u8> = pattern.iter().copied().cycle().take(len).collect();
        prop_assert_eq!(xml::parse(&body), Err(XmlError::TooLarge { len, max: MAX_BODY_BYTES }));
    }

    /// A well-formed message of exactly 64 KiB is still accepted; one byte more is not.
    #[test]
    fn the_limit_is_inclusive(fields in fields()) {
        let mut fields = fields;
        fields.insert("padding".into(), String::new());
        let room = MAX_BODY_BYTES - xml::to_xml(&fields).len();
        fields.insert("padding".into(), "x".repeat(room));
        let body = xml::to_xml(&fields);
        prop_assert_eq!(body.len(), MAX_BODY_BYTES);
        prop_assert_eq!(xml::parse(body.as_bytes()), Ok(fields.clone()));
        fields.insert("padding".into(), "x".repeat(room + 1));
        let too_large = matches!(xml::parse(xml::to_xml(&fields).as_bytes()), Err(XmlError::TooLarge { .. }));
        prop_assert!(too_large);
    }
}
