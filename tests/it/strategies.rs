//! Generators: field names and values, field maps, notifications, and near-XML — documents
//! built from the pieces a v2 message is made of and the ones the parser must refuse, then
//! truncated, flipped or spliced.

use paynotify::wxpay::Fields;
use proptest::{
    collection::{btree_map, vec},
    prelude::*,
    sample::{Index, select},
};

use crate::fuzz_targets::{APPID, MCH_ID};

/// Names WeChat sends; a few are also markup-ish (`xml`) or special to signing.
const KNOWN_NAMES: &[&str] = &[
    "appid",
    "mch_id",
    "return_code",
    "return_msg",
    "result_code",
    "sign",
    "sign_type",
    "total_fee",
    "out_trade_no",
    "transaction_id",
    "time_end",
    "attach",
    "coupon_fee_0",
    "xml",
];

/// Pieces of values that are special to XML, to CDATA, to signing or to WeChat.
const TRICKY_TEXT: &[&str] = &[
    "]]>",
    "]]",
    "]",
    ">",
    "<",
    "&",
    "&amp;",
    "&lt;",
    "<![CDATA[",
    "<!DOCTYPE xml>",
    "<!ENTITY x \"y\">",
    "\r",
    "\r\n",
    "<!--",
    "-->",
    "<?xml?>",
    "=",
    "&key=",
    " ",
    "\t",
    "\n",
    "\"",
    "'",
    "支付测试",
    "😀",
    "\u{feff}",
    "\u{2028}",
    "\u{fffd}",
    "SUCCESS",
    "x",
];

/// A valid XML name: mostly WeChat's, else ASCII or Unicode letters.
pub fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(KNOWN_NAMES).prop_map(str::to_owned),
        3 => "[A-Za-z_][A-Za-z0-9_.:-]{0,12}",
        1 => "[\\p{L}_][\\p{L}\\p{N}_.-]{0,6}",
    ]
}

/// Any text without control characters other than `\t`, `\n` and `\r`,
/// including everything XML and CDATA treat specially. Sometimes empty.
pub fn field_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "\\PC{0,24}",
        3 => vec(select(TRICKY_TEXT), 1..6).prop_map(|parts| parts.concat()),
        1 => Just(String::new()),
        1 => "[0-9]{1,10}",
    ]
}

pub fn non_empty_value() -> impl Strategy<Value = String> {
    field_value().prop_map(|value| if value.is_empty() { "x".into() } else { value })
}

pub fn fields() -> impl Strategy<Value = Fields> {
    btree_map(field_name(), field_value(), 0..12)
}

pub fn non_empty_fields() -> impl Strategy<Value = Fields> {
    btree_map(field_name(), field_value(), 1..12)
}

/// `name`, or `name` followed by enough `_` to be none of `taken`'s names, nor `sign`.
pub fn fresh_name(taken: &Fields, name: &str) -> String {
    let mut name = name.to_owned();
    while name == "sign" || taken.contains_key(&name) {
        name.push('_');
    }
    name
}

/// A notification to our merchant or another, with well-formed or broken payment fields and
/// some unknown extras; not signed.
pub fn notification() -> impl Strategy<Value = Fields> {
    let code = || {
        prop_oneof![
            6 => Just("SUCCESS".to_owned()),
            1 => select(vec!["FAIL", "", "success", "SUCCESS "]).prop_map(str::to_owned),
        ]
    };
    let amount = prop_oneof![
        6 => "[1-9][0-9]{0,6}",
        1 => select(vec!["0", "-1", "25.00", "", " 1", "+1", "99999999999999999999"])
            .prop_map(str::to_owned),
        1 => "\\PC{0,6}",
    ];
    let time_end = prop_oneof![
        4 => "20[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|1[0-9]|2[0-8])([01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]",
        1 => "[0-9]{14}",
        1 => "\\PC{0,16}",
    ];
    let ours = |value: &'static str, other: &'static str| prop_oneof![6 => Just(value.to_owned()), 1 => Just(other.to_owned()), 1 => Just(String::new())];
    (
        (
            code(),
            code(),
            ours(APPID, "wx0000000000000000"),
            ours(MCH_ID, "1900000109"),
        ),
        (amount, time_end, "[A-Za-z0-9_-]{0,40}", "[0-9]{0,40}"),
        select(vec!["CNY", "", "USD"]),
        btree_map(field_name(), field_value(), 0..4),
    )
        .prop_map(
            |(
                (return_code, result_code, appid, mch_id),
                (total_fee, time_end, out_trade_no, transaction_id),
                fee_type,
                extra,
            )| {
                let mut fields = extra;
                fields.remove("sign");
                fields.remove("sign_type");
                for (name, value) in [
                    ("return_code", return_code),
                    ("result_code", result_code),
                    ("appid", appid),
                    ("mch_id", mch_id),
                    ("total_fee", total_fee),
                    ("time_end", time_end),
                    ("out_trade_no", out_trade_no),
                    ("transaction_id", transaction_id),
                    ("fee_type", fee_type.to_owned()),
                    ("nonce_str", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS".to_owned()),
                ] {
                    fields.insert(name.to_owned(), value);
                }
                fields
            },
        )
}

/// The five predefined entities, character references good and bad, and undeclared names.
const REFERENCES: &[&str] = &[
    "&amp;",
    "&lt;",
    "&gt;",
    "&apos;",
    "&quot;",
    "&#x4e2d;",
    "&#20013;",
    "&#0;",
    "&#xD;",
    "&#x110000;",
    "&#xD800;",
    "&#;",
    "&#x;",
    "&lol;",
    "&x;",
    "&;",
    "&amp",
    "&AMP;",
];

/// Markup a v2 message never carries, some of it hostile.
pub const DOCTYPES: &[&str] = &[
    "<!DOCTYPE xml>",
    "<!DOCTYPE xml [<!ENTITY x \"y\">]>",
    "<!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>",
    "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;\">]>",
    "<!DOCTYPE xml SYSTEM \"http://127.0.0.1/evil.dtd\">",
    "<!DOCTYPE xml PUBLIC \"-//x//y\" \"z.dtd\">",
    "<!doctype xml>",
];

const NOISE: &[&str] = &[
    "<!ENTITY x \"y\">",
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
    "<?xml version=\"1.0\" encoding=\"GBK\"?>",
    "<?php echo 1; ?>",
    "<!-- c -->",
    "<!---->",
    "<!-- -- -->",
    "<![CDATA[",
    "]]>",
    "<xml>",
    "</xml>",
    "<xml/>",
    "</a>",
    "<a",
    "/>",
    ">",
    "<",
    "&",
    "\u{feff}",
    "\r\n",
    " x=\"1\"",
];

fn markup_noise() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(NOISE).prop_map(str::to_owned),
        1 => select(DOCTYPES).prop_map(str::to_owned),
    ]
}

/// A name from a small pool (so fields repeat) or any name.
fn child_name() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => select(vec!["a", "b", "return_code", "sign", "xml"]).prop_map(str::to_owned),
        1 => field_name(),
        1 => "\\PC{0,4}",
    ]
}

/// An element's content: text, CDATA (well split or not), references, noise.
fn content() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => "[^<&\r]{0,10}",
        3 => field_value().prop_map(|value| cdata(&value)),
        1 => field_value().prop_map(|value| format!("<![CDATA[{value}]]>")),
        2 => select(REFERENCES).prop_map(str::to_owned),
        1 => markup_noise(),
    ];
    vec(piece, 0..4).prop_map(|pieces| pieces.concat())
}

fn child() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (child_name(), content()).prop_map(|(name, content)| format!("<{name}>{content}</{name}>")),
        1 => child_name().prop_map(|name| format!("<{name}/>")),
        1 => (child_name(), child_name(), content())
            .prop_map(|(outer, inner, content)| format!("<{outer}><{inner}>{content}</{inner}></{outer}>")),
        1 => (child_name(), child_name(), content())
            .prop_map(|(open, close, content)| format!("<{open}>{content}</{close}>")),
        1 => markup_noise(),
        1 => select(vec!["\n  ", " ", "\t", "stray", "\r\n"]).prop_map(str::to_owned),
    ]
}

fn document() -> impl Strategy<Value = String> {
    let root = prop_oneof![8 => Just("xml".to_owned()), 1 => child_name()];
    let outside = || {
        vec(
            prop_oneof![
                3 => select(vec!["\n", "  ", "<?xml version=\"1.0\"?>", "<!-- c -->"]).prop_map(str::to_owned),
                1 => markup_noise(),
                1 => "\\PC{0,4}",
            ],
            0..3,
        )
    };
    (outside(), root, vec(child(), 0..10), outside()).prop_map(
        |(prolog, root, children, epilog)| {
            format!(
                "{}<{root}>{}</{root}>{}",
                prolog.concat(),
                children.concat(),
                epilog.concat()
            )
        },
    )
}

/// A byte-level change to a document, as a mutation-based fuzzer would make.
#[derive(Clone, Debug)]
enum Mutation {
    Truncate(Index),
    Flip(Index, u8),
    Insert(Index, u8),
    Remove(Index, Index),
    Splice(Index, String),
    Repeat(Index, Index),
}

impl Mutation {
    fn apply(&self, bytes: &mut Vec<u8>) {
        let at = |index: &Index, len: usize| index.index(len + 1);
        match self {
            Mutation::Truncate(i) => bytes.truncate(at(i, bytes.len())),
            Mutation::Flip(i, mask) if !bytes.is_empty() => {
                let i = i.index(bytes.len());
                bytes[i] ^= mask;
            }
            Mutation::Flip(..) => {}
            Mutation::Insert(i, byte) => bytes.insert(at(i, bytes.len()), *byte),
            Mutation::Remove(a, b) | Mutation::Repeat(a, b) => {
                let (a, b) = (at(a, bytes.len()), at(b, bytes.len()));
                let (from, to) = (a.min(b), a.max(b));
                if matches!(self, Mutation::Remove(..)) {
                    bytes.drain(from..to);
                } else {
                    let copy = bytes[from..to].to_vec();
                    bytes.splice(to..to, copy);
                }
            }
            Mutation::Splice(i, text) => {
                let i = at(i, bytes.len());
                bytes.splice(i..i, text.bytes());
            }
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), 1..=255u8).prop_map(|(i, mask)| Mutation::Flip(i, mask)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, byte)| Mutation::Insert(i, byte)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Remove(a, b)),
        (any::<Index>(), markup_noise()).prop_map(|(i, text)| Mutation::Splice(i, text)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Repeat(a, b)),
    ]
}

/// Near-XML: a generated document, half the time left as it is, else mutated at byte level.
pub fn near_xml() -> impl Strategy<Value = Vec<u8>> {
    (
        document(),
        prop_oneof![1 => Just(Vec::new()), 1 => vec(mutation(), 1..4)],
    )
        .prop_map(|(document, mutations)| {
            let mut bytes = document.into_bytes();
            for mutation in &mutations {
                mutation.apply(&mut bytes);
            }
            bytes
        })
}

/// A byte string mutated from `seed` by up to three byte-level changes.
pub fn mutated(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    vec(mutation(), 0..4).prop_map(move |mutations| {
        let mut bytes = seed.clone();
        for mutation in &mutations {
            mutation.apply(&mut bytes);
        }
        bytes
    })
}

/// `value` as CDATA, a `]]>` inside split across two sections (as `to_xml` writes it).
/// A carriage return cannot stand in CDATA (XML reads it as `\n`), and `<!DOCTYPE`/`<!ENTITY`
/// anywhere is refused: both go between sections.
pub fn cdata(value: &str) -> String {
    let section = |line: &str| {
        let mut text = line.replace("]]>", "]]]]><![CDATA[>");
        for declaration in ["<!D", "<!d", "<!E", "<!e"] {
            let split = format!("<]]><![CDATA[{}", &declaration[1..]);
            text = text.replace(declaration, &split);
        }
        format!("<![CDATA[{text}]]>")
    };
    value
        .split('\r')
        .map(section)
        .collect::<Vec<_>>()
        .join("&#13;")
}

/// `value` as escaped character data.
pub fn escaped(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\r', "&#13;")
}
