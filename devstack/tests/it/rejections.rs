//! Notifications that must not pay anything: each gets a FAIL ack (or SUCCESS where the
//! rules say it is handled for good) and the order stays as it was.

use order_svc::testing::Backend;
use paynotify::wxpay::{Fields, sign::SignType, xml::to_xml};
use wxpay_sim::{NewOrder, config::DEMO_API_KEY, signed_xml};

use crate::support::*;

async fn rejections_change_nothing(backend: Backend) {
    let stack = start(backend).await;
    let order = new_order(&stack, 3_000).await;
    let genuine = paid_notification(&stack, &order).await;

    // Forged: signed with another key.
    let forged = signed_xml(
        genuine.to_fields(),
        "another-key-another-key-another-k",
        SignType::Md5,
    );
    let (_, reply) = post(&stack, forged).await;
    assert!(is_fail(&reply), "forged: {reply}");

    // Tampered after signing: the amount was changed.
    let mut fields = paynotify::wxpay::xml::parse(sign(&genuine).as_bytes()).unwrap();
    fields.insert("total_fee".into(), "1".into());
    let (_, reply) = post(&stack, to_xml(&fields)).await;
    assert!(is_fail(&reply), "tampered: {reply}");

    // No signature at all.
    let mut unsigned: Fields = genuine.to_fields();
    unsigned.insert("nonce_str".into(), "abc".into());
    let (_, reply) = post(&stack, to_xml(&unsigned)).await;
    assert!(is_fail(&reply), "unsigned: {reply}");

    // Correctly signed, but for another merchant.
    for (appid, mch_id) in [
        ("wx0000000000000000", stack.config.mch_id.as_str()),
        (stack.config.appid.as_str(), "1000000000"),
    ] {
        let mut other = genuine.clone();
        other.appid = appid.into();
        other.mch_id = mch_id.into();
        let (_, reply) = post(&stack, sign(&other)).await;
        assert!(is_fail(&reply), "wrong merchant {appid}/{mch_id}: {reply}");
    }

    // Correctly signed, but the amount differs from WeChat's record (and the order's).
    let mut cheaper = genuine.clone();
    cheaper.total_fee = 1;
    cheaper.cash_fee = 1;
    let (_, reply) = post(&stack, sign(&cheaper)).await;
    assert!(is_fail(&reply), "amount: {reply}");

    assert_untouched(&stack, &order.id).await;

    // The genuine one still works afterwards.
    let (_, reply) = post(&stack, sign(&genuine)).await;
    assert!(is_success(&reply), "{reply}");
    assert_paid_once(&stack, &order.id, &genuine.transaction_id).await;
}

#[tokio::test]
async fn rejections_change_nothing_sqlite() {
    rejections_change_nothing(Backend::Sqlite).await;
}

#[tokio::test]
async fn rejections_change_nothing_postgres() {
    rejections_change_nothing(Backend::Postgres).await;
}

#[tokio::test]
async fn rejections_change_nothing_mariadb() {
    rejections_change_nothing(Backend::Mysql).await;
}

#[tokio::test]
async fn a_cheaper_wechat_payment_never_pays_an_expensive_order() {
    // The original system's defect: WeChat really received 1 fen for an order of 100 yuan
    // (e.g. the price was altered client-side). Signed and confirmed by WeChat, yet the
    // amount differs from the order's, so nothing changes.
    let stack = start(Backend::Sqlite).await;
    let order = stack
        .order_client()
        .unwrap()
        .create_order(paynotify::proto::order::v1::CreateOrderRequest {
            pay_money: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    stack
        .sim_client()
        .create_order(&NewOrder {
            out_trade_no: order.id.clone(),
            total_fee: 1,
            notify_url: stack.notify_url(),
            body: None,
            attach: None,
        })
        .await
        .unwrap();
    let paid = stack.sim_client().pay(&order.id, false).await.unwrap();
    let mut notification =
        wxpay_sim::Notification::paid(&stack.config.appid, &stack.config.mch_id, &order.id, 1);
    notification.transaction_id = paid.transaction_id;
    let (_, reply) = post(&stack, sign(&notification)).await;
    assert!(is_fail(&reply), "{reply}");
    assert_untouched(&stack, &order.id).await;
}

#[tokio::test]
async fn unknown_order_and_unpaid_wechat_order_get_fail() {
    let stack = start(Backend::Sqlite).await;

    // A notification for an order order-svc does not have.
    let unknown = wxpay_sim::Notification::paid(
        &stack.config.appid,
        &stack.config.mch_id,
        "no-such-order-1",
        100,
    );
    let (_, reply) = post(&stack, sign(&unknown)).await;
    assert!(is_fail(&reply), "unknown: {reply}");

    // A signed SUCCESS notification while WeChat says NOTPAY (never paid in the simulator).
    let order = new_order(&stack, 100).await;
    let claimed =
        wxpay_sim::Notification::paid(&stack.config.appid, &stack.config.mch_id, &order.id, 100);
    let (_, reply) = post(&stack, sign(&claimed)).await;
    assert!(is_fail(&reply), "notpay: {reply}");
    assert_untouched(&stack, &order.id).await;
}

#[tokio::test]
async fn verified_failure_notices_are_acknowledged_and_change_nothing() {
    let stack = start(Backend::Sqlite).await;
    let order = new_order(&stack, 100).await;

    // result_code FAIL: the payment failed; WeChat may stop resending.
    let mut failed =
        wxpay_sim::Notification::paid(&stack.config.appid, &stack.config.mch_id, &order.id, 100);
    failed.result_code = "FAIL".into();
    failed.err_code = Some("SYSTEMERROR".into());
    let (_, reply) = post(&stack, sign(&failed)).await;
    assert!(is_success(&reply), "result FAIL: {reply}");

    // return_code FAIL: a communication-level notice, nothing to verify or do.
    let mut fields = Fields::new();
    fields.insert("return_code".into(), "FAIL".into());
    fields.insert("return_msg".into(), "签名失败".into());
    let (_, reply) = post(&stack, to_xml(&fields)).await;
    assert!(is_success(&reply), "return FAIL: {reply}");

    // A failure notice with a bad signature is still a forgery.
    let forged = signed_xml(
        failed.to_fields(),
        "another-key-another-key-another-k",
        SignType::Md5,
    );
    let (_, reply) = post(&stack, forged).await;
    assert!(is_fail(&reply), "{reply}");

    assert_untouched(&stack, &order.id).await;
}

#[tokio::test]
async fn hmac_sha256_notifications_verify_too() {
    let stack = start(Backend::Sqlite).await;
    let order = new_order(&stack, 100).await;
    let notification = paid_notification(&stack, &order).await;
    let body = wxpay_sim::signed_notification(&notification, DEMO_API_KEY, SignType::HmacSha256);
    assert!(body.contains("HMAC-SHA256"));
    let (_, reply) = post(&stack, body).await;
    assert!(is_success(&reply), "{reply}");
    assert_paid_once(&stack, &order.id, &notification.transaction_id).await;
}
