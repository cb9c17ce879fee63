//! Microbenchmarks of the protocol work done per notification: parsing the XML (gateway),
//! verifying its signature (pay-svc), and signing (every orderquery request pay-svc sends, and
//! the simulator's replies). The notification is SPEC §9's V2-NOTIFY-1, laid out as WeChat
//! sends it (CDATA strings, a numeric total_fee), so the figures are for a real-sized message.
//!
//! Run with `cargo bench -p paynotify --bench wxpay`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use paynotify::wxpay::{
    Fields,
    sign::{SignType, sign, verify},
    xml::parse,
};

/// SPEC §9's documentation key.
const KEY: &str = "192006250b4c09247ec02edce69f6a2d";

/// V2-NOTIFY-1: MD5-signed, `sign` = A79C5985C6A8FC7DA5DF1F7656412908.
const NOTIFY_MD5: &str = "<xml>\
<appid><![CDATA[wx2421b1c4370ec43b]]></appid>\
<attach><![CDATA[支付测试]]></attach>\
<bank_type><![CDATA[CFT]]></bank_type>\
<cash_fee><![CDATA[1]]></cash_fee>\
<fee_type><![CDATA[CNY]]></fee_type>\
<is_subscribe><![CDATA[Y]]></is_subscribe>\
<mch_id><![CDATA[10000100]]></mch_id>\
<nonce_str><![CDATA[5d2b6c2a8db53831f7eda20af46e531c]]></nonce_str>\
<openid><![CDATA[oUpF8uMEb4qRXf22hE3X68TekukE]]></openid>\
<out_trade_no><![CDATA[1409811653]]></out_trade_no>\
<result_code><![CDATA[SUCCESS]]></result_code>\
<return_code><![CDATA[SUCCESS]]></return_code>\
<sign><![CDATA[A79C5985C6A8FC7DA5DF1F7656412908]]></sign>\
<time_end><![CDATA[20140903131540]]></time_end>\
<total_fee>1</total_fee>\
<trade_type><![CDATA[JSAPI]]></trade_type>\
<transaction_id><![CDATA[1004400740201409030005092168]]></transaction_id>\
</xml>";

/// V2-NOTIFY-2: the same with `sign_type` HMAC-SHA256.
fn notify_hmac() -> String {
    NOTIFY_MD5.replace(
        "<sign><![CDATA[A79C5985C6A8FC7DA5DF1F7656412908]]></sign>",
        "<sign><![CDATA[91A356D1D5F2450A3381951A8174E5FDFBA86A909ADDDBA50A9A61343CA47DEA]]></sign>\
             <sign_type><![CDATA[HMAC-SHA256]]></sign_type>",
    )
}

/// What pay-svc signs for each notification it confirms: an orderquery request.
fn order_query_request() -> Fields {
    [
        ("appid", "wx2421b1c4370ec43b"),
        ("mch_id", "10000100"),
        ("nonce_str", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"),
        ("out_trade_no", "1409811653"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn parse_and_verify(c: &mut Criterion) {
    let hmac = notify_hmac();
    // The vectors must hold, or the figures would be for the failure path.
    let md5_fields = parse(NOTIFY_MD5.as_bytes()).expect("V2-NOTIFY-1 parses");
    assert_eq!(verify(&md5_fields, KEY), Ok(SignType::Md5));
    let hmac_fields = parse(hmac.as_bytes()).expect("V2-NOTIFY-2 parses");
    assert_eq!(verify(&hmac_fields, KEY), Ok(SignType::HmacSha256));

    let mut group = c.benchmark_group("notification");
    group.bench_function("parse", |b| {
        b.iter(|| parse(black_box(NOTIFY_MD5.as_bytes())))
    });
    group.bench_function("verify md5", |b| {
        b.iter(|| verify(black_box(&md5_fields), black_box(KEY)))
    });
    group.bench_function("parse + verify md5", |b| {
        b.iter(|| {
            let fields = parse(black_box(NOTIFY_MD5.as_bytes())).expect("parses");
            verify(&fields, black_box(KEY)).expect("verifies")
        })
    });
    group.bench_function("parse + verify hmac-sha256", |b| {
        b.iter(|| {
            let fields = parse(black_box(hmac.as_bytes())).expect("parses");
            verify(&fields, black_box(KEY)).expect("verifies")
        })
    });
    group.finish();
}

fn signing(c: &mut Criterion) {
    let notification = parse(NOTIFY_MD5.as_bytes()).expect("V2-NOTIFY-1 parses");
    let request = order_query_request();
    let mut group = c.benchmark_group("sign");
    for (name, sign_type) in [
        ("md5", SignType::Md5),
        ("hmac-sha256", SignType::HmacSha256),
    ] {
        group.bench_function(format!("notification {name}"), |b| {
            b.iter(|| sign(black_box(&notification), black_box(KEY), sign_type))
        });
        group.bench_function(format!("orderquery request {name}"), |b| {
            b.iter(|| sign(black_box(&request), black_box(KEY), sign_type))
        });
    }
    group.finish();
}

criterion_group!(benches, parse_and_verify, signing);
criterion_main!(benches);
