//! The WeChat endpoints over real sockets: answers, error codes and signatures as SPEC §3.

use paynotify::wxpay::{
    sign::{SignType, verify},
    time::parse_time_end,
};
use wxpay_sim::TradeState;

use crate::support::{KEY, Sim, merchant_fields, order_request, with};

const NOTIFY_URL: &str = "http://127.0.0.1:9/wxpay/notify";

/// An orderquery answer's fields other than the protocol ones and trade_state(_desc).
pub fn business_fields(answer: &paynotify::wxpay::Fields) -> Vec<&str> {
    const PROTOCOL: [&str; 9] = [
        "return_code",
        "return_msg",
        "appid",
        "mch_id",
        "nonce_str",
        "sign",
        "result_code",
        "trade_state",
        "trade_state_desc",
    ];
    answer
        .keys()
        .map(String::as_str)
        .filter(|name| !PROTOCOL.contains(name))
        .collect()
}

#[tokio::test]
async fn unifiedorder_answers_a_signed_prepay_and_code_url() {
    let sim = Sim::start().await;
    let answer = sim.unified_order("U1", 1999, NOTIFY_URL).await;
    assert_eq!(answer["return_code"], "SUCCESS");
    assert_eq!(answer["trade_type"], "NATIVE");
    assert!(answer["prepay_id"].starts_with("wx"));
    assert!(answer["code_url"].starts_with("weixin://wxpay/bizpayurl?pr="));
    assert_eq!(answer["appid"], wxpay_sim::DEMO_APPID);
    assert_eq!(answer["nonce_str"].len(), 32);
    assert_eq!(verify(&answer, KEY), Ok(SignType::Md5));

    // The same request again gets the same prepay; different terms are refused.
    let again = sim.unified_order("U1", 1999, NOTIFY_URL).await;
    assert_eq!(again["prepay_id"], answer["prepay_id"]);
    assert_eq!(again["code_url"], answer["code_url"]);
    assert_ne!(again["nonce_str"], answer["nonce_str"]);
    let changed = sim
        .call("/pay/unifiedorder", order_request("U1", 2000, NOTIFY_URL))
        .await;
    assert_eq!(changed["result_code"], "FAIL");
    assert_eq!(changed["err_code"], "OUT_TRADE_NO_USED");
    assert_eq!(verify(&changed, KEY), Ok(SignType::Md5));

    // Paid: ORDERPAID.
    sim.client.pay("U1", false).await.unwrap();
    let paid = sim
        .call("/pay/unifiedorder", order_request("U1", 1999, NOTIFY_URL))
        .await;
    assert_eq!(paid["err_code"], "ORDERPAID");
    sim.stop().await;
}

#[tokio::test]
async fn hmac_requests_get_hmac_signed_answers() {
    let sim = Sim::start().await;
    let answer = sim
        .wechat(
            "/pay/unifiedorder",
            order_request("H1", 1, NOTIFY_URL),
            KEY,
            SignType::HmacSha256,
        )
        .await;
    assert_eq!(answer["result_code"], "SUCCESS", "{answer:?}");
    assert_eq!(answer["sign_type"], "HMAC-SHA256");
    assert_eq!(verify(&answer, KEY), Ok(SignType::HmacSha256));
    sim.stop().await;
}

#[tokio::test]
async fn protocol_failures_answer_return_code_fail_unsigned() {
    let sim = Sim::start().await;
    let expect_fail = |answer: paynotify::wxpay::Fields, message: &str| {
        assert_eq!(answer["return_code"], "FAIL", "{answer:?}");
        assert_eq!(answer["return_msg"], message);
        assert!(!answer.contains_key("sign"));
        assert!(!answer.contains_key("result_code"));
    };

    let wrong_key = sim
        .wechat(
            "/pay/unifiedorder",
            order_request("F1", 1, NOTIFY_URL),
            "another-key-another-key-another-k",
            SignType::Md5,
        )
        .await;
    expect_fail(wrong_key, "签名错误");

    // Signed with MD5 while declaring HMAC-SHA256.
    let mut mislabelled = order_request("F1", 1, NOTIFY_URL);
    mislabelled.insert("nonce_str".into(), "n1".into());
    let sign = paynotify::wxpay::sign::sign(&mislabelled, KEY, SignType::Md5);
    mislabelled.insert("sign".into(), sign);
    mislabelled.insert("sign_type".into(), "HMAC-SHA256".into());
    let body = paynotify::wxpay::xml::to_xml(&mislabelled);
    expect_fail(sim.post_xml("/pay/unifiedorder", body).await, "签名错误");

    let wrong_mch = with(
        order_request("F1", 1, NOTIFY_URL),
        &[("mch_id", "1900000109")],
    );
    expect_fail(
        sim.call("/pay/unifiedorder", wrong_mch).await,
        "appid和mch_id不匹配",
    );

    let doctype = "<!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><a>&x;</a></xml>";
    expect_fail(
        sim.post_xml("/pay/orderquery", doctype.into()).await,
        "XML格式错误",
    );
    expect_fail(
        sim.post_xml("/pay/closeorder", "not xml".into()).await,
        "XML格式错误",
    );

    // Nothing was placed.
    assert_eq!(
        sim.client.order("F1").await.unwrap_err().status(),
        Some(404)
    );
    sim.stop().await;
}

#[tokio::test]
async fn bad_parameters_are_signed_param_errors() {
    let sim = Sim::start().await;
    for (request, description) in [
        (order_request("P1", 0, NOTIFY_URL), "total_fee参数格式错误"),
        (
            order_request("P1", 1, "http://127.0.0.1:9/notify?order=1"),
            "notify_url参数格式错误",
        ),
        (
            with(order_request("P1", 1, NOTIFY_URL), &[("product_id", "")]),
            "缺少参数product_id",
        ),
    ] {
        let answer = sim.call("/pay/unifiedorder", request).await;
        assert_eq!(answer["return_code"], "SUCCESS");
        assert_eq!(answer["result_code"], "FAIL");
        assert_eq!(answer["err_code"], "PARAM_ERROR");
        assert_eq!(answer["err_code_des"], description);
        assert_eq!(verify(&answer, KEY), Ok(SignType::Md5));
    }
    sim.stop().await;
}

#[tokio::test]
async fn orderquery_reports_each_trade_state() {
    let sim = Sim::start().await;
    let query = |pairs: &[(&str, &str)]| with(merchant_fields(), pairs);

    let missing = sim
        .call("/pay/orderquery", query(&[("out_trade_no", "Q404")]))
        .await;
    assert_eq!(missing["return_code"], "SUCCESS");
    assert_eq!(missing["result_code"], "FAIL");
    assert_eq!(missing["err_code"], "ORDERNOTEXIST");
    assert_eq!(verify(&missing, KEY), Ok(SignType::Md5));

    let mut request = order_request("Q1", 1999, NOTIFY_URL);
    request.insert("attach".into(), "支付测试".into());
    sim.call("/pay/unifiedorder", request).await;

    let unpaid = sim
        .call("/pay/orderquery", query(&[("out_trade_no", "Q1")]))
        .await;
    assert_eq!(unpaid["result_code"], "SUCCESS");
    assert_eq!(unpaid["trade_state"], "NOTPAY");
    assert_eq!(unpaid["trade_state_desc"], "订单未支付");
    assert_eq!(business_fields(&unpaid), ["out_trade_no"]);

    let paid = sim.client.pay("Q1", false).await.unwrap();
    assert_eq!(paid.total_fee, 1999);
    assert_eq!(paid.transaction_id.len(), 28);
    let answer = sim
        .call("/pay/orderquery", query(&[("out_trade_no", "Q1")]))
        .await;
    assert_eq!(verify(&answer, KEY), Ok(SignType::Md5));
    assert_eq!(answer["trade_state"], "SUCCESS");
    assert_eq!(answer["trade_state_desc"], "支付成功");
    assert_eq!(answer["transaction_id"], paid.transaction_id);
    assert_eq!(answer["total_fee"], "1999");
    assert_eq!(answer["cash_fee"], "1999");
    assert_eq!(answer["fee_type"], "CNY");
    assert_eq!(answer["trade_type"], "NATIVE");
    assert_eq!(answer["attach"], "支付测试");
    assert!(answer["openid"].starts_with('o'));
    assert!(!answer["bank_type"].is_empty());
    assert!(parse_time_end(&answer["time_end"]).is_ok());

    // By transaction_id; and transaction_id wins over out_trade_no.
    let by_id = sim
        .call(
            "/pay/orderquery",
            query(&[
                ("transaction_id", &paid.transaction_id),
                ("out_trade_no", "other"),
            ]),
        )
        .await;
    assert_eq!(by_id["out_trade_no"], "Q1");
    let unknown_id = sim
        .call(
            "/pay/orderquery",
            query(&[
                ("transaction_id", "4200000000000000000000000000"),
                ("out_trade_no", "Q1"),
            ]),
        )
        .await;
    assert_eq!(unknown_id["err_code"], "ORDERNOTEXIST");

    let neither = sim.call("/pay/orderquery", query(&[])).await;
    assert_eq!(neither["err_code"], "PARAM_ERROR");

    // Not SUCCESS: "only out_trade_no (always) and attach (optional)" besides the state
    // (SPEC §3.2); attach because the order was paid.
    sim.client.refund("Q1").await.unwrap();
    let refunded = sim
        .call("/pay/orderquery", query(&[("out_trade_no", "Q1")]))
        .await;
    assert_eq!(verify(&refunded, KEY), Ok(SignType::Md5));
    assert_eq!(refunded["trade_state"], "REFUND");
    assert_eq!(refunded["trade_state_desc"], "转入退款");
    assert_eq!(refunded["attach"], "支付测试");
    assert_eq!(business_fields(&refunded), ["attach", "out_trade_no"]);

    let stats = sim.client.stats().await.unwrap();
    assert_eq!(stats.orderquery_calls, 7);
    assert_eq!(stats.unifiedorder_calls, 1);
    sim.stop().await;
}

#[tokio::test]
async fn closeorder_closes_unpaid_orders_only() {
    let sim = Sim::start().await;
    let close = |no: &str| with(merchant_fields(), &[("out_trade_no", no)]);
    sim.unified_order("C1", 100, NOTIFY_URL).await;
    sim.unified_order("C2", 100, NOTIFY_URL).await;

    let closed = sim.call("/pay/closeorder", close("C1")).await;
    assert_eq!(closed["result_code"], "SUCCESS", "{closed:?}");
    assert_eq!(verify(&closed, KEY), Ok(SignType::Md5));
    assert_eq!(
        sim.client.order("C1").await.unwrap().trade_state,
        TradeState::Closed
    );
    let query = sim.call("/pay/orderquery", close("C1")).await;
    assert_eq!(query["trade_state"], "CLOSED");

    let again = sim.call("/pay/closeorder", close("C1")).await;
    assert_eq!(again["err_code"], "ORDERCLOSED");
    let reopen = sim
        .call("/pay/unifiedorder", order_request("C1", 100, NOTIFY_URL))
        .await;
    assert_eq!(reopen["err_code"], "ORDERCLOSED");
    assert_eq!(
        sim.client.pay("C1", false).await.unwrap_err().status(),
        Some(409)
    );

    sim.client.pay("C2", false).await.unwrap();
    let paid = sim.call("/pay/closeorder", close("C2")).await;
    assert_eq!(paid["err_code"], "ORDERPAID");

    let unknown = sim.call("/pay/closeorder", close("C404")).await;
    assert_eq!(unknown["err_code"], "ORDERNOTEXIST");
    assert_eq!(sim.client.stats().await.unwrap().closeorder_calls, 4);
    sim.stop().await;
}

#[tokio::test]
async fn control_api_errors_are_json_with_the_right_status() {
    let sim = Sim::start().await;
    let error = sim.client.pay("nope", true).await.unwrap_err();
    assert_eq!(error.status(), Some(404), "{error}");
    assert_eq!(
        sim.client.order("nope").await.unwrap_err().status(),
        Some(404)
    );

    let order = wxpay_sim::NewOrder {
        out_trade_no: "D1".into(),
        total_fee: 500,
        notify_url: NOTIFY_URL.into(),
        body: None,
        attach: None,
    };
    let created = sim.client.create_order(&order).await.unwrap();
    assert_eq!(created.trade_state, TradeState::NotPay);
    assert_eq!(created.total_fee, 500);
    assert_eq!(
        sim.client.create_order(&order).await.unwrap_err().status(),
        Some(409)
    );
    let bad = wxpay_sim::NewOrder {
        out_trade_no: "D2".into(),
        total_fee: 0,
        ..order.clone()
    };
    assert_eq!(
        sim.client.create_order(&bad).await.unwrap_err().status(),
        Some(400)
    );

    sim.client.pay("D1", false).await.unwrap();
    assert_eq!(
        sim.client.pay("D1", false).await.unwrap_err().status(),
        Some(409)
    );
    // Not paid: nothing to replay.
    assert_eq!(
        sim.client.replay("D404").await.unwrap_err().status(),
        Some(404)
    );

    // Malformed JSON is a 400 with a JSON error body.
    let response = reqwest::Client::new()
        .post(format!("{}/sim/pay", sim.base))
        .header("content-type", "application/json")
        .body("{\"out_trade_no\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"].is_string());
    sim.stop().await;
}
