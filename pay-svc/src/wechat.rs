//! WeChat Pay as pay-svc calls it: the shared client, plus what pay-svc adds around
//! `orderquery` — a metric per call by result, and, while the API key is being rotated
//! (`WXPAY_API_KEY_PREVIOUS`), acceptance of a reply signed with the previous key.
//!
//! Requests are always signed with the current key. A reply that fails verification with it
//! is asked for once more and checked against the previous key: the shared client does not
//! hand out the body of a reply it rejected, and this path only runs during a rotation.

use std::time::Instant;

use paynotify::wxpay::{
    Fields,
    client::{
        Api, ClientConfig, OrderQuery, OrderRef, WechatClient, WechatError, check_reply,
        parse_order_query, signed_request,
    },
    xml,
};
use secrecy::SecretString;

use crate::metrics::{self, QueryResult, QuerySource};

#[derive(Clone, Debug)]
pub struct Wechat {
    client: WechatClient,
    previous: Option<PreviousKey>,
}

/// What verifying with the key being rotated out needs.
#[derive(Clone, Debug)]
struct PreviousKey {
    /// The client's settings with the previous key in place of the current one: used only
    /// to verify replies, never to sign.
    verify: ClientConfig,
    http: reqwest::Client,
}

impl Wechat {
    /// `previous_key`: `WXPAY_API_KEY_PREVIOUS`, if a rotation is under way.
    pub fn new(
        client: WechatClient,
        previous_key: Option<SecretString>,
    ) -> Result<Wechat, WechatError> {
        let previous = previous_key
            .map(|api_key| {
                let config = client.config();
                let http = reqwest::Client::builder()
                    .connect_timeout(config.connect_timeout)
                    .timeout(config.request_timeout)
                    .user_agent(concat!("pay-svc/", env!("CARGO_PKG_VERSION")))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| WechatError::Config(format!("HTTP client: {e}")))?;
                Ok(PreviousKey {
                    verify: ClientConfig {
                        api_key,
                        ..config.clone()
                    },
                    http,
                })
            })
            .transpose()?;
        Ok(Wechat { client, previous })
    }

    /// The shared client, for the calls pay-svc does not wrap (unifiedorder).
    pub fn client(&self) -> &WechatClient {
        &self.client
    }

    /// orderquery, counted and timed under `source`.
    pub async fn order_query(
        &self,
        order: &OrderRef,
        source: QuerySource,
    ) -> Result<OrderQuery, WechatError> {
        let started = Instant::now();
        let mut result = self.client.order_query(order).await;
        if let (Err(WechatError::BadSignature { .. }), Some(previous)) = (&result, &self.previous)
            && let Some(query) = previous.order_query(self.client.config(), order).await
        {
            tracing::info!(
                event = "wxpay.previous_key_used",
                "orderquery reply verified with WXPAY_API_KEY_PREVIOUS"
            );
            metrics::previous_key_accepted(true);
            result = Ok(query);
        }
        metrics::orderquery(source, QueryResult::of(&result), started);
        result
    }
}

impl PreviousKey {
    /// One orderquery signed with the current key whose reply is verified with the previous
    /// one; `None` when that fails too (the caller keeps its original error).
    async fn order_query(&self, current: &ClientConfig, order: &OrderRef) -> Option<OrderQuery> {
        let mut fields = Fields::new();
        match order {
            OrderRef::OutTradeNo(no) => fields.insert("out_trade_no".into(), no.clone()),
            OrderRef::TransactionId(id) => fields.insert("transaction_id".into(), id.clone()),
        };
        let url = format!("{}/pay/orderquery", current.base_url.trim_end_matches('/'));
        let response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(signed_request(current, &fields))
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()?;
        let body = read_bounded(response).await?;
        let reply = check_reply(Api::OrderQuery, &body, &self.verify).ok()?;
        parse_order_query(reply).ok()
    }
}

/// The body, unless it is larger than any reply WeChat sends.
async fn read_bounded(mut response: reqwest::Response) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.ok()? {
        body.extend_from_slice(&chunk);
        if body.len() > xml::MAX_BODY_BYTES {
            return None;
        }
    }
    Some(body)
}
