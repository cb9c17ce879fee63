//! Inputs on which `paynotify::wxpay` does not do what it should, found by the properties in
//! this binary. Each test is ignored until the code is fixed (src/wxpay is not this harness's
//! to change); `cargo test --test it -- --ignored` shows them failing.

use paynotify::wxpay::{Fields, xml};

/// `to_xml` writes a carriage return into CDATA as it is, and every XML parser (ours, and
/// WeChat's) reads `\r` and `\r\n` back as `\n` (XML 1.0 §2.11). So a value with a `\r` does
/// not survive `to_xml` → `parse`: a request we sign over `a\r\nb` reaches WeChat as `a\nb`,
/// and its signature fails there. A CDATA section cannot carry `\r`; `&#13;` outside one can.
#[test]
#[ignore = "known issue: to_xml loses carriage returns (see doc comment)"]
fn a_carriage_return_survives_to_xml_and_parse() {
    let fields: Fields = [("body".to_owned(), "line 1\r\nline 2\r".to_owned())].into();
    let serialised = xml::to_xml(&fields);
    assert_eq!(xml::parse(serialised.as_bytes()), Ok(fields));
}

/// SPEC §7.1 asks to "reject any input containing `<!DOCTYPE` or `<!ENTITY`". The parser
/// rejects a DOCTYPE declaration wherever it stands as markup (the property
/// `a_doctype_anywhere_in_the_markup_is_refused`), but not the same characters as inert text
/// inside CDATA or a comment, where no parser treats them as a declaration.
#[test]
#[ignore = "spec deviation: `<!DOCTYPE` as CDATA or comment text is accepted (see doc comment)"]
fn any_body_containing_doctype_is_refused() {
    for body in [
        "<xml><a><![CDATA[<!DOCTYPE xml [<!ENTITY x \"y\">]>]]></a></xml>",
        "<!-- <!DOCTYPE xml> --><xml><a>1</a></xml>",
        "<xml><a><![CDATA[<!ENTITY x SYSTEM \"file:///etc/passwd\">]]></a></xml>",
    ] {
        assert!(xml::parse(body.as_bytes()).is_err(), "accepted {body}");
    }
}
