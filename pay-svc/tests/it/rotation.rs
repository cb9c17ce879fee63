// Setup failures panic, like the assertions.
#![allow(clippy::unwrap_used)]
//! Rotating the merchant API key (docs/OPERATIONS.md): with WXPAY_API_KEY set to the new key
//! and WXPAY_API_KEY_PREVIOUS to the old one, notifications and orderquery replies signed with
//! either verify, requests are signed with the new key only, and anything else is still a bad
//! signature.

use std::sync::{Arc, Mutex};

use pay_svc::{metrics::QuerySource, wechat::Wechat};
use paynotify::{
    proto::{order::v1::OrderState, pay::v1::NotifyOutcome},
    wxpay::{
        Fields,
        client::{ClientConfig, OrderRef, RetryPolicy, TradeState, WechatClient, WechatError},
        sign::{self, SignType},
        xml,
    },
};
use secrecy::SecretString;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use wxpay_sim::{DEMO_API_KEY, DEMO_APPID, DEMO_MCH_ID};

use crate::support::{bounded, paid_notification, signed_with, stack_with};

/// The key being rotated out. The simulator (WeChat) already signs with the new one, the
/// demo key.
const OLD_KEY: &str = "0ldKey0ldKey0ldKey0ldKey0ldKey01";
const OTHER_KEY: &str = "S0meoneElsesKeyS0meoneElsesKey01";

#[tokio::test]
async fn notifications_signed_with_the_previous_key_are_accepted_during_rotation() {
    bounded(async {
        let mut s = stack_with(|config| {
            config.wxpay_api_key_previous = Some(SecretString::from(OLD_KEY));
        })
        .await;

        // Signed before WeChat switched keys, delivered after pay-svc did.
        let (order, transaction_id) = s.paid_at_wechat(2500).await;
        let notification = paid_notification(&order.id, 2500, &transaction_id);
        let verdict = s
            .confirm(signed_with(&notification, OLD_KEY))
            .await
            .unwrap();
        assert_eq!(verdict.outcome(), NotifyOutcome::Paid, "{verdict:?}");
        assert!(verdict.acknowledge);
        assert_eq!(s.order(&order.id).await.state(), OrderState::Paid);

        // The new key, of course, and nothing else.
        let (order, transaction_id) = s.paid_at_wechat(700).await;
        let notification = paid_notification(&order.id, 700, &transaction_id);
        let verdict = s
            .confirm(signed_with(&notification, OTHER_KEY))
            .await
            .unwrap();
        assert_eq!(
            verdict.outcome(),
            NotifyOutcome::BadSignature,
            "{verdict:?}"
        );
        let verdict = s
            .confirm(signed_with(&notification, DEMO_API_KEY))
            .await
            .unwrap();
        assert_eq!(verdict.outcome(), NotifyOutcome::Paid, "{verdict:?}");
    })
    .await;
}

#[tokio::test]
async fn without_the_previous_key_the_old_signature_is_refused() {
    bounded(async {
        let mut s = stack_with(|_| {}).await;
        let (order, transaction_id) = s.paid_at_wechat(900).await;
        let notification = paid_notification(&order.id, 900, &transaction_id);
        let verdict = s
            .confirm(signed_with(&notification, OLD_KEY))
            .await
            .unwrap();
        assert_eq!(
            verdict.outcome(),
            NotifyOutcome::BadSignature,
            "{verdict:?}"
        );
        assert_eq!(s.order(&order.id).await.state(), OrderState::Unpaid);
    })
    .await;
}

/// A WeChat stand-in that answers every orderquery with a reply signed with `reply_key` and
/// keeps the requests it received.
async fn wechat_signing_with(reply_key: &'static str) -> (String, Arc<Mutex<Vec<Fields>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut received = Vec::new();
                let mut buffer = [0u8; 4096];
                // Head, then as much body as Content-Length says.
                let body = loop {
                    let n = stream.read(&mut buffer).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    received.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&received).into_owned();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break body.to_owned();
                    }
                };
                if let Ok(fields) = xml::parse(body.as_bytes()) {
                    seen.lock().unwrap().push(fields);
                }
                let mut reply: Fields = [
                    ("return_code", "SUCCESS"),
                    ("result_code", "SUCCESS"),
                    ("appid", DEMO_APPID),
                    ("mch_id", DEMO_MCH_ID),
                    ("nonce_str", "n0nce"),
                    ("trade_state", "SUCCESS"),
                    ("out_trade_no", "R1"),
                    ("transaction_id", "4200000000202401010000000001"),
                    ("total_fee", "2500"),
                    ("cash_fee", "2500"),
                    ("fee_type", "CNY"),
                    ("time_end", "20240101120000"),
                    ("trade_type", "NATIVE"),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
                sign::sign_fields(&mut reply, reply_key, SignType::Md5);
                let body = xml::to_xml(&reply);
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    (base, requests)
}

fn client(base_url: String) -> WechatClient {
    WechatClient::new(ClientConfig {
        base_url,
        retry: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        ..ClientConfig::new(DEMO_APPID, DEMO_MCH_ID, DEMO_API_KEY.into())
    })
    .unwrap()
}

#[tokio::test]
async fn orderquery_replies_signed_with_the_previous_key_are_accepted_during_rotation() {
    bounded(async {
        let (base, requests) = wechat_signing_with(OLD_KEY).await;
        let order = OrderRef::OutTradeNo("R1".into());

        let strict = Wechat::new(client(base.clone()), None).unwrap();
        let refused = strict.order_query(&order, QuerySource::Api).await;
        assert!(
            matches!(refused, Err(WechatError::BadSignature { .. })),
            "{refused:?}"
        );

        let rotating = Wechat::new(client(base), Some(SecretString::from(OLD_KEY))).unwrap();
        let query = rotating
            .order_query(&order, QuerySource::Api)
            .await
            .unwrap();
        assert_eq!(query.trade_state, TradeState::Success);
        assert_eq!(query.total_fee, Some(2500));

        // Every request WeChat received was signed with the new key, never the old one.
        let requests = requests.lock().unwrap().clone();
        assert!(requests.len() >= 3, "{requests:?}");
        for request in &requests {
            assert_eq!(sign::verify(request, DEMO_API_KEY), Ok(SignType::Md5));
            assert!(sign::verify(request, OLD_KEY).is_err());
        }

        // A reply signed with a third key is refused even during rotation.
        let (base, _) = wechat_signing_with(OTHER_KEY).await;
        let rotating = Wechat::new(client(base), Some(SecretString::from(OLD_KEY))).unwrap();
        assert!(matches!(
            rotating.order_query(&order, QuerySource::Api).await,
            Err(WechatError::BadSignature { .. })
        ));
    })
    .await;
}
