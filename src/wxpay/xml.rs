//! WeChat Pay v2 XML ⇄ field map.
//!
//! A v2 message is `<xml>` with one child element per field, its text given as CDATA or plain
//! text alike. Parsing is strict on purpose, because the notify URL is public: DOCTYPE and
//! custom entities (XXE, billion laughs: CVE-2018-13439), duplicate fields, nested elements,
//! invalid UTF-8 and oversized bodies are each rejected with their own error. The sender's
//! text an error repeats (a name, an entity, the parser's message) is bounded and escaped
//! ([`crate::loggable`]): errors are logged as they are, and they come from anyone.

use std::collections::BTreeMap;

use quick_xml::{Reader, events::Event};

/// The fields of one message, sorted by name (the order the signature needs).
pub type Fields = BTreeMap<String, String>;

/// The largest body accepted. WeChat's notifications are a few KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How much of the sender's text an [`XmlError`] repeats, in characters: WeChat's field names
/// are far shorter, the parser's messages with two names in them a little longer.
const MAX_SHOWN_CHARS: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XmlError {
    #[error("body is {len} bytes, over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("body is empty")]
    Empty,
    #[error("body is not valid UTF-8")]
    NotUtf8,
    #[error("DOCTYPE and ENTITY declarations are not accepted")]
    Doctype,
    #[error("entity `&{0};` is not accepted")]
    UnknownEntity(String),
    #[error("root element must be <xml>, found <{0}>")]
    WrongRoot(String),
    #[error("field `{0}` appears more than once")]
    DuplicateField(String),
    #[error("field `{0}` contains a nested element")]
    NestedElement(String),
    #[error("element name `{0}` is not an XML name")]
    BadName(String),
    #[error("text outside of any field")]
    StrayText,
    #[error("content after </xml>")]
    TrailingContent,
    #[error("malformed XML: {0}")]
    Malformed(String),
}

/// Parses a v2 message body into its fields.
pub fn parse(body: &[u8]) -> Result<Fields, XmlError> {
    parse_fields(body).map_err(XmlError::loggable)
}

impl XmlError {
    /// The error with the text it repeats made safe for a log line. Every variant is named, so
    /// a new one carrying text has to be decided on here.
    fn loggable(self) -> XmlError {
        let shown = |text: String| crate::loggable(&text, MAX_SHOWN_CHARS).into_owned();
        match self {
            XmlError::UnknownEntity(name) => XmlError::UnknownEntity(shown(name)),
            XmlError::WrongRoot(name) => XmlError::WrongRoot(shown(name)),
            XmlError::DuplicateField(name) => XmlError::DuplicateField(shown(name)),
            XmlError::NestedElement(name) => XmlError::NestedElement(shown(name)),
            XmlError::BadName(name) => XmlError::BadName(shown(name)),
            XmlError::Malformed(message) => XmlError::Malformed(shown(message)),
            XmlError::TooLarge { .. }
            | XmlError::Empty
            | XmlError::NotUtf8
            | XmlError::Doctype
            | XmlError::StrayText
            | XmlError::TrailingContent => self,
        }
    }
}

fn parse_fields(body: &[u8]) -> Result<Fields, XmlError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(XmlError::TooLarge {
            len: body.len(),
            max: MAX_BODY_BYTES,
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| XmlError::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(XmlError::Empty);
    }
    if contains_declaration(text) {
        return Err(XmlError::Doctype);
    }
    let mut reader = Reader::from_str(text);
    let mut fields = Fields::new();
    // Where the reader is: before the root, inside <xml>, inside a field, after </xml>.
    let mut depth = 0usize;
    let mut seen_root = false;
    let mut current: Option<(String, String)> = None;

    loop {
        let event = reader
            .read_event()
            .map_err(|e| XmlError::Malformed(e.to_string()))?;
        match event {
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Decl(_) | Event::Comment(_) => {}
            Event::PI(_) => return Err(XmlError::Malformed("processing instruction".into())),
            Event::Start(start) => {
                let name = field_name_of(start.name().as_ref())?;
                match depth {
                    0 if seen_root => return Err(XmlError::TrailingContent),
                    0 if name != "xml" => return Err(XmlError::WrongRoot(name)),
                    0 => seen_root = true,
                    1 => current = Some((name, String::new())),
                    _ => return Err(XmlError::NestedElement(field_name(&current))),
                }
                depth += 1;
            }
            Event::Empty(start) => {
                let name = field_name_of(start.name().as_ref())?;
                match depth {
                    0 if seen_root => return Err(XmlError::TrailingContent),
                    0 => return Err(XmlError::WrongRoot(name)),
                    1 => insert(&mut fields, name, String::new())?,
                    _ => return Err(XmlError::NestedElement(field_name(&current))),
                }
            }
            Event::End(_) => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| XmlError::Malformed("unmatched end tag".into()))?;
                if depth == 1
                    && let Some((name, value)) = current.take()
                {
                    insert(&mut fields, name, value)?;
                }
            }
            Event::Text(text) => {
                let content = text.xml10_content();
                match (&mut current, depth) {
                    (Some((_, value)), 2) => value.push_str(&content),
                    _ if content.trim().is_empty() => {}
                    _ if depth == 0 && seen_root => return Err(XmlError::TrailingContent),
                    _ => return Err(XmlError::StrayText),
                }
            }
            Event::CData(cdata) => match (&mut current, depth) {
                (Some((_, value)), 2) => value.push_str(&cdata.xml10_content()),
                _ => return Err(XmlError::StrayText),
            },
            Event::GeneralRef(reference) => {
                let resolved = resolve_reference(&reference)?;
                match (&mut current, depth) {
                    (Some((_, value)), 2) => value.push_str(&resolved),
                    _ => return Err(XmlError::StrayText),
                }
            }
            Event::Eof => break,
        }
    }
    if !seen_root || depth != 0 {
        return Err(XmlError::Malformed("unexpected end of document".into()));
    }
    Ok(fields)
}

/// Serialises fields as a compact v2 message, every value in CDATA.
pub fn to_xml(fields: &Fields) -> String {
    let mut out = String::with_capacity(32 + fields.len() * 48);
    out.push_str("<xml>");
    for (name, value) in fields {
        out.push('<');
        out.push_str(name);
        out.push('>');
        push_cdata(&mut out, value);
        out.push_str("</");
        out.push_str(name);
        out.push('>');
    }
    out.push_str("</xml>");
    out
}

/// Appends `value` as CDATA. The section is split where its text would otherwise be read as
/// something else: inside `]]>` (which would end it) and inside `<!` (so no `<!DOCTYPE` or
/// `<!ENTITY` appears, which `parse` refuses anywhere, as WeChat does). A carriage return goes
/// between sections as `&#13;`: XML reads a literal `\r` back as `\n` (XML 1.0 §2.11), which
/// would change a signed value on its way.
pub(crate) fn push_cdata(out: &mut String, value: &str) {
    out.push_str("<![CDATA[");
    let bytes = value.as_bytes();
    let mut copied = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let before = &bytes[..at];
        if byte == b'\r' {
            out.push_str(&value[copied..at]);
            out.push_str("]]>&#13;<![CDATA[");
            copied = at + 1;
        } else if (byte == b'>' && before.ends_with(b"]]"))
            || (byte == b'!' && before.ends_with(b"<"))
        {
            out.push_str(&value[copied..at]);
            out.push_str("]]><![CDATA[");
            copied = at;
        }
    }
    out.push_str(&value[copied..]);
    out.push_str("]]>");
}

/// SPEC §7.1: any input containing `<!DOCTYPE` or `<!ENTITY` is refused, wherever it stands
/// (the parser also refuses a DOCTYPE as markup; this catches it as CDATA or comment text too,
/// and any spelling of its case).
fn contains_declaration(text: &str) -> bool {
    text.match_indices("<!").any(|(at, _)| {
        let rest = text.as_bytes().get(at + 2..).unwrap_or_default();
        let starts = |word: &[u8]| {
            rest.get(..word.len())
                .is_some_and(|r| r.eq_ignore_ascii_case(word))
        };
        starts(b"DOCTYPE") || starts(b"ENTITY")
    })
}

/// Refuses element names holding characters no XML name can hold. quick-xml takes anything up
/// to `>`, space or `/` as a name, and the signature string joins `name=value` pairs with `&`
/// unescaped: a name like `cash_fee=100&fee_type` would fold two signed fields into one and
/// drop the second unnoticed.
fn field_name_of(raw: &str) -> Result<String, XmlError> {
    let impossible = |c: char| "=&/<>\"'!?;,()[]{}".contains(c) || c.is_whitespace();
    // Nor can one start with a digit, `-` or `.`.
    let bad_start = raw.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.');
    if raw.is_empty() || bad_start || raw.contains(impossible) {
        Err(XmlError::BadName(raw.to_owned()))
    } else {
        Ok(raw.to_owned())
    }
}

fn insert(fields: &mut Fields, name: String, value: String) -> Result<(), XmlError> {
    // One walk of the tree, not a lookup and then an insert: parsing is on the hot path.
    match fields.entry(name) {
        std::collections::btree_map::Entry::Occupied(taken) => {
            Err(XmlError::DuplicateField(taken.key().clone()))
        }
        std::collections::btree_map::Entry::Vacant(slot) => {
            slot.insert(value);
            Ok(())
        }
    }
}

fn field_name(current: &Option<(String, String)>) -> String {
    current
        .as_ref()
        .map(|(name, _)| name.clone())
        .unwrap_or_default()
}

/// Character references and the five predefined entities; anything else is refused, since
/// without a DTD there is nothing it could legitimately mean.
fn resolve_reference(reference: &quick_xml::events::BytesRef<'_>) -> Result<String, XmlError> {
    if reference.is_char_ref() {
        return match reference.resolve_char_ref() {
            Ok(Some(c)) => Ok(c.to_string()),
            _ => Err(XmlError::Malformed("invalid character reference".into())),
        };
    }
    let name = reference.xml10_content();
    let resolved = match name.as_ref() {
        "lt" => "<",
        "gt" => ">",
        "amp" => "&",
        "apos" => "'",
        "quot" => "\"",
        other => return Err(XmlError::UnknownEntity(other.to_owned())),
    };
    Ok(resolved.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Fields, XmlError> {
        parse(s.as_bytes())
    }

    #[test]
    fn cdata_and_plain_text_give_the_same_value() {
        let fields =
            parse_str("<xml><a><![CDATA[1]]></a><b>1</b><c>x&amp;y&#x4e2d;</c></xml>").unwrap();
        assert_eq!(fields["a"], "1");
        assert_eq!(fields["b"], "1");
        assert_eq!(fields["c"], "x&y中");
    }

    #[test]
    fn whitespace_between_fields_is_ignored_but_kept_inside_values() {
        let fields =
            parse_str("<?xml version=\"1.0\"?>\n<xml>\n  <a><![CDATA[ x ]]></a>\n  <b/>\n</xml>\n")
                .unwrap();
        assert_eq!(fields["a"], " x ");
        assert_eq!(fields["b"], "");
    }

    #[test]
    fn the_official_sample_with_its_duplicate_coupon_fee_is_rejected() {
        let body = "<xml><coupon_fee><![CDATA[10]]></coupon_fee><coupon_fee><![CDATA[100]]></coupon_fee></xml>";
        assert_eq!(
            parse_str(body),
            Err(XmlError::DuplicateField("coupon_fee".into()))
        );
    }

    #[test]
    fn doctype_and_entities_are_rejected() {
        let xxe = "<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><a>&x;</a></xml>";
        assert_eq!(parse_str(xxe), Err(XmlError::Doctype));
        let laughs = "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;\">]><xml><a>&lol2;</a></xml>";
        assert_eq!(parse_str(laughs), Err(XmlError::Doctype));
        assert_eq!(
            parse_str("<xml><a>&lol;</a></xml>"),
            Err(XmlError::UnknownEntity("lol".into()))
        );
    }

    #[test]
    fn names_that_could_fold_signed_fields_are_rejected() {
        for bad in [
            "<xml><b//></xml>",
            "<xml><a=b>1</a=b></xml>",
            "<xml><a&b/></xml>",
        ] {
            assert!(parse_str(bad).is_err(), "{bad}");
        }
        assert!(parse_str("<xml><coupon_fee_0>1</coupon_fee_0></xml>").is_ok());
    }

    #[test]
    fn nested_elements_and_wrong_roots_are_rejected() {
        assert_eq!(
            parse_str("<xml><a><b>1</b></a></xml>"),
            Err(XmlError::NestedElement("a".into()))
        );
        assert_eq!(
            parse_str("<root><a>1</a></root>"),
            Err(XmlError::WrongRoot("root".into()))
        );
        assert_eq!(parse_str("<xml>hi<a>1</a></xml>"), Err(XmlError::StrayText));
        assert_eq!(
            parse_str("<xml><a>1</a></xml><xml></xml>"),
            Err(XmlError::TrailingContent)
        );
        assert_eq!(
            parse_str("<xml><a>1</a></xml>junk"),
            Err(XmlError::TrailingContent)
        );
    }

    #[test]
    fn malformed_empty_non_utf8_and_huge_bodies_are_rejected() {
        assert_eq!(parse_str(""), Err(XmlError::Empty));
        assert_eq!(parse_str("  \n"), Err(XmlError::Empty));
        assert!(matches!(
            parse_str("<xml><a>1</b></xml>"),
            Err(XmlError::Malformed(_))
        ));
        assert!(matches!(
            parse_str("<xml><a>1</a>"),
            Err(XmlError::Malformed(_))
        ));
        assert!(parse_str("{\"return_code\":\"SUCCESS\"}").is_err());
        // "支付" in GBK.
        assert_eq!(
            parse(b"<xml><a>\xd6\xa7\xb8\xb6</a></xml>"),
            Err(XmlError::NotUtf8)
        );
        let huge = format!("<xml><a>{}</a></xml>", "x".repeat(MAX_BODY_BYTES));
        assert!(matches!(parse_str(&huge), Err(XmlError::TooLarge { .. })));
    }

    #[test]
    fn to_xml_round_trips_including_cdata_terminators() {
        let mut fields = Fields::new();
        fields.insert("a".into(), "x]]>y".into());
        fields.insert("b".into(), "支付测试".into());
        fields.insert("c".into(), String::new());
        fields.insert("d".into(), "a\r\nb\r".into());
        fields.insert("e".into(), "<!DOCTYPE x><!ENTITY y>".into());
        let xml = to_xml(&fields);
        assert!(!xml.contains('\r') && !xml.contains("<!DOCTYPE") && !xml.contains("<!ENTITY"));
        assert_eq!(parse_str(&xml).unwrap(), fields);
    }

    #[test]
    fn errors_repeat_the_senders_text_on_one_bounded_line() {
        let forged = "\n2025-01-01T00:00:00Z WARN pay_svc: event=\"notify.payment_conflict\"";
        let entity = parse_str(&format!("<xml><a>&a{forged};</a></xml>")).unwrap_err();
        assert_eq!(
            entity,
            XmlError::UnknownEntity(format!("a\\n{}", &forged[1..]))
        );
        let end_tag = parse_str(&format!("<xml><a>1</a\u{1b}[2K{forged}></xml>")).unwrap_err();
        assert!(matches!(end_tag, XmlError::Malformed(_)), "{end_tag:?}");
        let long = "y".repeat(MAX_BODY_BYTES / 4);
        for body in [
            format!("<xml><a>1</{long}></xml>"),
            format!("<xml><a>&{long};</a></xml>"),
            format!("<{long}/>"),
            format!("<xml><{long}/><{long}/></xml>"),
            "<xml><a><b>1</b></a></xml>".replace('a', &long),
        ] {
            let error = parse_str(&body).unwrap_err();
            let shown = error.to_string();
            assert!(shown.chars().count() < 200, "{error:?}");
        }
        for error in [entity, end_tag] {
            let shown = error.to_string();
            assert!(!shown.chars().any(char::is_control), "{shown}");
        }
    }

    #[test]
    fn doctype_or_entity_text_is_refused_even_where_inert() {
        for body in [
            "<xml><a><![CDATA[<!DOCTYPE x>]]></a></xml>",
            "<!-- <!entity x> --><xml><a>1</a></xml>",
        ] {
            assert_eq!(parse_str(body), Err(XmlError::Doctype), "{body}");
        }
        // Escaped, it is text like any other.
        assert_eq!(
            parse_str("<xml><a>&lt;!DOCTYPE</a></xml>").unwrap()["a"],
            "<!DOCTYPE"
        );
    }
}
