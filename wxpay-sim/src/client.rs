//! A typed client for the control API, for the CLI and for other crates' tests (pay-svc,
//! end-to-end): pay an order (with a coupon if asked), set its trade_state, read its
//! notification and attempts, replay, read counters, set faults.

use std::time::Duration;

use reqwest::{Method, Url};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    faults::Faults,
    model::{
        ErrorBody, NewOrder, PayRequest, PayResult, ReplayRequest, ReplayResult,
        SignedNotification, SimOrder, SimStats, TradeState, TradeStateRequest,
    },
};

/// How long one control call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often [`SimClient::wait_for_order`] polls.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid simulator URL `{0}`")]
    BaseUrl(String),
    #[error("calling the simulator")]
    Http(#[from] reqwest::Error),
    /// The simulator answered with an error status (404 unknown order, 409 wrong state, …).
    #[error("simulator answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("order {out_trade_no} did not reach the expected state within {waited:?}")]
    Timeout {
        out_trade_no: String,
        waited: Duration,
    },
}

impl ClientError {
    /// The HTTP status of an error answer, if that is what this is.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The control-API client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SimClient {
    base: String,
    http: reqwest::Client,
}

impl SimClient {
    /// A client for the simulator at `base_url`, e.g. `http://127.0.0.1:9020`.
    pub fn new(base_url: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .no_proxy()
            .build()
            .unwrap_or_default();
        SimClient {
            base: base_url.into(),
            http,
        }
    }

    /// `POST /sim/pay`: the user pays a NOTPAY order; with `notify`, WeChat starts
    /// delivering the payment notification.
    pub async fn pay(&self, out_trade_no: &str, notify: bool) -> Result<PayResult, ClientError> {
        self.pay_as(out_trade_no, notify, None).await
    }

    /// [`SimClient::pay`] with the transaction_id chosen by the caller.
    pub async fn pay_as(
        &self,
        out_trade_no: &str,
        notify: bool,
        transaction_id: Option<&str>,
    ) -> Result<PayResult, ClientError> {
        let request = PayRequest {
            notify,
            transaction_id: transaction_id.map(str::to_owned),
            ..PayRequest::new(out_trade_no)
        };
        self.pay_with(&request).await
    }

    /// `POST /sim/pay` with every option, e.g. a coupon:
    /// `PayRequest { coupon_fee: Some(30), ..PayRequest::new("A1") }`.
    pub async fn pay_with(&self, request: &PayRequest) -> Result<PayResult, ClientError> {
        self.call(Method::POST, &["sim", "pay"], Some(request))
            .await
    }

    /// `POST /sim/orders/{out_trade_no}/trade_state`: moves an unpaid order to USERPAYING,
    /// ACCEPT, PAYERROR, REVOKED or back to NOTPAY.
    pub async fn set_trade_state(
        &self,
        out_trade_no: &str,
        trade_state: TradeState,
    ) -> Result<SimOrder, ClientError> {
        self.call(
            Method::POST,
            &["sim", "orders", out_trade_no, "trade_state"],
            Some(&TradeStateRequest { trade_state }),
        )
        .await
    }

    /// `GET /sim/orders/{out_trade_no}/notification`: the signed notification the next
    /// attempt would POST, unsent.
    pub async fn notification(
        &self,
        out_trade_no: &str,
    ) -> Result<SignedNotification, ClientError> {
        self.call(
            Method::GET,
            &["sim", "orders", out_trade_no, "notification"],
            None::<&()>,
        )
        .await
    }

    /// `GET /sim/orders/{out_trade_no}`: WeChat's record, with every notification attempt.
    pub async fn order(&self, out_trade_no: &str) -> Result<SimOrder, ClientError> {
        self.call(Method::GET, &["sim", "orders", out_trade_no], None::<&()>)
            .await
    }

    /// `POST /sim/orders`: places an order directly, without unifiedorder.
    pub async fn create_order(&self, order: &NewOrder) -> Result<SimOrder, ClientError> {
        self.call(Method::POST, &["sim", "orders"], Some(order))
            .await
    }

    /// `POST /sim/orders/{out_trade_no}/notify`: delivers the notification once, now, and
    /// returns the attempts made.
    pub async fn replay(&self, out_trade_no: &str) -> Result<ReplayResult, ClientError> {
        self.notify(out_trade_no, false).await
    }

    /// `POST /sim/orders/{out_trade_no}/notify` with `restart_schedule`: starts WeChat's retry
    /// schedule afresh in the background.
    pub async fn restart_notifications(
        &self,
        out_trade_no: &str,
    ) -> Result<ReplayResult, ClientError> {
        self.notify(out_trade_no, true).await
    }

    async fn notify(
        &self,
        out_trade_no: &str,
        restart_schedule: bool,
    ) -> Result<ReplayResult, ClientError> {
        let request = ReplayRequest { restart_schedule };
        self.call(
            Method::POST,
            &["sim", "orders", out_trade_no, "notify"],
            Some(&request),
        )
        .await
    }

    /// `POST /sim/orders/{out_trade_no}/refund`: a paid order's trade_state becomes REFUND.
    pub async fn refund(&self, out_trade_no: &str) -> Result<SimOrder, ClientError> {
        self.call(
            Method::POST,
            &["sim", "orders", out_trade_no, "refund"],
            None::<&()>,
        )
        .await
    }

    /// `GET /sim/stats`.
    pub async fn stats(&self) -> Result<SimStats, ClientError> {
        self.call(Method::GET, &["sim", "stats"], None::<&()>).await
    }

    /// `GET /sim/faults`: the faults in force.
    pub async fn faults(&self) -> Result<Faults, ClientError> {
        self.call(Method::GET, &["sim", "faults"], None::<&()>)
            .await
    }

    /// `PUT /sim/faults`: replaces the whole fault set (use `Faults::default()` to clear) and
    /// returns it as now in force.
    pub async fn set_faults(&self, faults: &Faults) -> Result<Faults, ClientError> {
        self.call(Method::PUT, &["sim", "faults"], Some(faults))
            .await
    }

    /// Polls the order until `done` holds, for at most `timeout`.
    pub async fn wait_for_order(
        &self,
        out_trade_no: &str,
        timeout: Duration,
        done: impl Fn(&SimOrder) -> bool,
    ) -> Result<SimOrder, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let order = self.order(out_trade_no).await?;
            if done(&order) {
                return Ok(order);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::Timeout {
                    out_trade_no: out_trade_no.into(),
                    waited: timeout,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn url(&self, segments: &[&str]) -> Result<Url, ClientError> {
        let bad_base = || ClientError::BaseUrl(self.base.clone());
        let mut url = Url::parse(&self.base).map_err(|_| bad_base())?;
        url.path_segments_mut()
            .map_err(|()| bad_base())?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let mut request = self.http.request(method, self.url(segments)?);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response.json().await?);
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|body| body.error)
            .unwrap_or(text);
        Err(ClientError::Api {
            status: status.as_u16(),
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_and_escape_segments() {
        let client = SimClient::new("http://127.0.0.1:9020/");
        assert_eq!(
            client.url(&["sim", "orders", "A 1/x"]).unwrap().as_str(),
            "http://127.0.0.1:9020/sim/orders/A%201%2Fx"
        );
        let client = SimClient::new("http://127.0.0.1:9020");
        assert_eq!(
            client.url(&["sim", "stats"]).unwrap().as_str(),
            "http://127.0.0.1:9020/sim/stats"
        );
        assert!(matches!(
            SimClient::new("not a url").url(&["x"]),
            Err(ClientError::BaseUrl(_))
        ));
    }
}
