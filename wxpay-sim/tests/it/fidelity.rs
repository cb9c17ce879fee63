//! Inputs real WeChat sends that a receiver must take in its stride, over real sockets:
//! payments partly made with a coupon (cash_fee < total_fee, SPEC §1.2/§3.2), a signed field no
//! receiver knows (SPEC §1.2, §2.1), and the unpaid trade states of SPEC §3.3 with what
//! orderquery, closeorder and paying make of them.

use paynotify::wxpay::{
    Fields,
    sign::{SignType, verify},
};
use wxpay_sim::{Config, Faults, PayRequest, TradeState, UNKNOWN_FIELD};

use crate::{
    support::{KEY, Receiver, Reply, Sim, fast_config, merchant_fields, order_request, with},
    wechat_api::business_fields,
};

const NOTIFY_URL: &str = "http://127.0.0.1:9/wxpay/notify";

async fn order_query(sim: &Sim, out_trade_no: &str) -> Fields {
    let answer = sim
        .call(
            "/pay/orderquery",
            with(merchant_fields(), &[("out_trade_no", out_trade_no)]),
        )
        .await;
    assert_eq!(verify(&answer, KEY), Ok(SignType::Md5), "{answer:?}");
    answer
}

async fn close_order(sim: &Sim, out_trade_no: &str) -> Fields {
    sim.call(
        "/pay/closeorder",
        with(merchant_fields(), &[("out_trade_no", out_trade_no)]),
    )
    .await
}

fn coupon_payment(out_trade_no: &str, coupon_fee: i64) -> PayRequest {
    PayRequest {
        coupon_fee: Some(coupon_fee),
        ..PayRequest::new(out_trade_no)
    }
}

#[tokio::test]
async fn a_coupon_payment_carries_the_same_coupon_in_notification_and_orderquery() {
    let receiver = Receiver::start(vec![Reply::success()]).await;
    let sim = Sim::start().await;
    sim.unified_order("K1", 1999, &receiver.url).await;
    let paid = sim
        .client
        .pay_with(&coupon_payment("K1", 300))
        .await
        .unwrap();
    assert_eq!((paid.total_fee, paid.cash_fee), (1999, 1699));

    let notification = receiver.wait_for_hits(1).await[0].fields.clone();
    assert_eq!(verify(&notification, KEY), Ok(SignType::Md5));
    let answer = order_query(&sim, "K1").await;
    assert_eq!(answer["trade_state"], "SUCCESS");
    for fields in [&notification, &answer] {
        for (name, value) in [
            ("total_fee", "1999"),
            ("cash_fee", "1699"),
            ("coupon_fee", "300"),
            ("coupon_count", "1"),
            ("coupon_fee_0", "300"),
            ("transaction_id", paid.transaction_id.as_str()),
        ] {
            assert_eq!(fields[name], value, "{name} in {fields:?}");
        }
        let coupon_id = &fields["coupon_id_0"];
        assert!(
            (1..=20).contains(&coupon_id.len()) && coupon_id.bytes().all(|b| b.is_ascii_digit()),
            "{coupon_id}"
        );
        assert!(!fields.contains_key("coupon_id_1"));
    }
    assert_eq!(notification["coupon_id_0"], answer["coupon_id_0"]);
    assert_eq!(sim.client.order("K1").await.unwrap().coupon_fee, Some(300));

    // The unsent notification of the control API is the same payment, freshly signed.
    let unsent = sim.client.notification("K1").await.unwrap();
    assert_eq!(unsent.notify_url, receiver.url);
    let unsent = paynotify::wxpay::xml::parse(unsent.body.as_bytes()).unwrap();
    assert_eq!(verify(&unsent, KEY), Ok(SignType::Md5));
    assert_ne!(unsent["nonce_str"], notification["nonce_str"]);
    for name in ["cash_fee", "coupon_fee", "coupon_id_0", "transaction_id"] {
        assert_eq!(unsent[name], notification[name], "{name}");
    }
    sim.stop().await;
}

#[tokio::test]
async fn cash_payments_carry_no_coupon_fields() {
    let sim = Sim::start().await;
    sim.unified_order("K2", 500, NOTIFY_URL).await;
    let paid = sim.client.pay("K2", false).await.unwrap();
    assert_eq!(paid.cash_fee, 500);
    let answer = order_query(&sim, "K2").await;
    assert_eq!(answer["cash_fee"], "500");
    assert!(!answer.keys().any(|name| name.starts_with("coupon")));
    assert_eq!(sim.client.order("K2").await.unwrap().coupon_fee, None);
    let unsent = sim.client.notification("K2").await.unwrap();
    assert!(!unsent.body.contains("coupon"), "{}", unsent.body);
    sim.stop().await;
}

#[tokio::test]
async fn a_coupon_must_fit_the_order() {
    let sim = Sim::start().await;
    sim.unified_order("K3", 1000, NOTIFY_URL).await;
    for coupon_fee in [0, -1, 1001] {
        let error = sim
            .client
            .pay_with(&coupon_payment("K3", coupon_fee))
            .await
            .unwrap_err();
        assert_eq!(error.status(), Some(400), "{coupon_fee}: {error}");
        assert!(error.to_string().contains("coupon_fee"), "{error}");
    }
    assert_eq!(
        sim.client.order("K3").await.unwrap().trade_state,
        TradeState::NotPay
    );
    // The whole order on a coupon: nothing in cash (coupon ≤ order amount, SPEC §1.2).
    let request = PayRequest {
        notify: false,
        ..coupon_payment("K3", 1000)
    };
    assert_eq!(sim.client.pay_with(&request).await.unwrap().cash_fee, 0);
    assert_eq!(order_query(&sim, "K3").await["cash_fee"], "0");
    sim.stop().await;
}

#[tokio::test]
async fn the_unknown_field_is_signed_into_notifications_and_orderquery_answers() {
    let (name, value) = UNKNOWN_FIELD;
    let receiver = Receiver::start(vec![Reply::success()]).await;
    let sim = Sim::start_with(Config {
        faults: Faults {
            unknown_field: true,
            ..Faults::default()
        },
        ..fast_config()
    })
    .await;
    sim.unified_order("Z1", 100, &receiver.url).await;
    sim.client.pay("Z1", true).await.unwrap();

    let notification = receiver.wait_for_hits(1).await[0].fields.clone();
    let answer = order_query(&sim, "Z1").await;
    let missing = sim
        .call(
            "/pay/orderquery",
            with(merchant_fields(), &[("out_trade_no", "Z404")]),
        )
        .await;
    assert_eq!(missing["err_code"], "ORDERNOTEXIST");
    for fields in [&notification, &answer, &missing] {
        assert_eq!(fields[name], value, "{fields:?}");
        assert!(verify(fields, KEY).is_ok());
        // A receiver that verifies only the fields it knows computes another signature.
        let mut known_only = fields.clone();
        known_only.remove(name);
        assert!(verify(&known_only, KEY).is_err());
    }
    let unsent = sim.client.notification("Z1").await.unwrap();
    assert!(unsent.body.contains(name), "{}", unsent.body);

    // Switched off at run time.
    sim.client.set_faults(&Faults::default()).await.unwrap();
    sim.client.replay("Z1").await.unwrap();
    let hits = receiver.wait_for_hits(2).await;
    assert!(!hits[1].fields.contains_key(name));
    assert!(!order_query(&sim, "Z1").await.contains_key(name));
    sim.stop().await;
}

#[tokio::test]
async fn orderquery_in_an_unpaid_state_answers_the_state_and_out_trade_no_only() {
    let sim = Sim::start().await;
    for (no, state, description) in [
        ("S1", TradeState::UserPaying, "用户支付中（付款码支付）"),
        ("S2", TradeState::Accept, "已接收，等待扣款"),
        ("S3", TradeState::PayError, "支付失败，请重新下单支付"),
        ("S4", TradeState::Revoked, "已撤销（付款码支付）"),
    ] {
        let mut request = order_request(no, 700, NOTIFY_URL);
        request.insert("attach".into(), "支付测试".into());
        sim.call("/pay/unifiedorder", request).await;
        let order = sim.client.set_trade_state(no, state).await.unwrap();
        assert_eq!(order.trade_state, state);
        let answer = order_query(&sim, no).await;
        assert_eq!(answer["result_code"], "SUCCESS");
        assert_eq!(answer["trade_state"], state.as_str());
        assert_eq!(answer["trade_state_desc"], description);
        // attach only for paid orders (SPEC §3.2).
        assert_eq!(business_fields(&answer), ["out_trade_no"], "{state}");
    }
    sim.stop().await;
}

#[tokio::test]
async fn paying_and_closing_follow_the_trade_state() {
    let sim = Sim::start().await;
    for no in ["P1", "P2", "P3", "P4", "P5"] {
        sim.unified_order(no, 100, NOTIFY_URL).await;
    }

    // Being paid (USERPAYING, ACCEPT): closeorder refuses, the payment may still go through.
    for (no, state) in [("P1", TradeState::UserPaying), ("P2", TradeState::Accept)] {
        sim.client.set_trade_state(no, state).await.unwrap();
        let refused = close_order(&sim, no).await;
        assert_eq!(refused["result_code"], "FAIL", "{refused:?}");
        assert_eq!(refused["err_code"], "USERPAYING");
        assert_eq!(verify(&refused, KEY), Ok(SignType::Md5));
        assert_eq!(sim.client.order(no).await.unwrap().trade_state, state);
        sim.client.pay(no, false).await.unwrap();
        assert_eq!(order_query(&sim, no).await["trade_state"], "SUCCESS");
    }

    // The buyer gave up entering the password: back to NOTPAY, then the terminal revoked it.
    sim.client
        .set_trade_state("P3", TradeState::UserPaying)
        .await
        .unwrap();
    sim.client
        .set_trade_state("P3", TradeState::NotPay)
        .await
        .unwrap();
    sim.client
        .set_trade_state("P3", TradeState::Revoked)
        .await
        .unwrap();
    // REVOKED is final: not payable, not closable, the number cannot be reused.
    assert_eq!(
        sim.client.pay("P3", false).await.unwrap_err().status(),
        Some(409)
    );
    assert_eq!(close_order(&sim, "P3").await["err_code"], "ORDERCLOSED");
    let reused = sim
        .call("/pay/unifiedorder", order_request("P3", 100, NOTIFY_URL))
        .await;
    assert_eq!(reused["err_code"], "ORDERCLOSED");

    // PAYERROR is final for paying; closeorder still ends it CLOSED (SPEC §3.3, §8).
    sim.client
        .set_trade_state("P4", TradeState::PayError)
        .await
        .unwrap();
    assert_eq!(
        sim.client.pay("P4", false).await.unwrap_err().status(),
        Some(409)
    );
    let closed = close_order(&sim, "P4").await;
    assert_eq!(closed["result_code"], "SUCCESS", "{closed:?}");
    assert_eq!(order_query(&sim, "P4").await["trade_state"], "CLOSED");

    // No unpaid state is notified.
    assert_eq!(
        sim.client.replay("P5").await.unwrap_err().status(),
        Some(409)
    );
    sim.stop().await;
}

#[tokio::test]
async fn only_unpaid_orders_move_and_only_to_a_buyer_state() {
    let sim = Sim::start().await;
    sim.unified_order("M1", 100, NOTIFY_URL).await;
    for state in [TradeState::Success, TradeState::Refund, TradeState::Closed] {
        let error = sim.client.set_trade_state("M1", state).await.unwrap_err();
        assert_eq!(error.status(), Some(400), "{state}: {error}");
    }
    let error = sim
        .client
        .set_trade_state("M404", TradeState::UserPaying)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(404));

    sim.client.pay("M1", false).await.unwrap();
    sim.unified_order("M2", 100, NOTIFY_URL).await;
    sim.client
        .set_trade_state("M2", TradeState::PayError)
        .await
        .unwrap();
    for no in ["M1", "M2"] {
        let error = sim
            .client
            .set_trade_state(no, TradeState::UserPaying)
            .await
            .unwrap_err();
        assert_eq!(error.status(), Some(409), "{no}: {error}");
    }
    assert_eq!(
        sim.client.order("M1").await.unwrap().trade_state,
        TradeState::Success
    );

    // The wire spelling is checked like every other JSON field.
    let response = reqwest::Client::new()
        .post(format!("{}/sim/orders/M1/trade_state", sim.base))
        .json(&serde_json::json!({"trade_state": "userpaying"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    sim.stop().await;
}
