//! Typed async client for WeChat Pay API v2's `unifiedorder`, `orderquery` and `closeorder`.
//!
//! The only part of `wxpay` with I/O. A request is built with the pure functions of `xml`,
//! `sign` and `time` (a fresh `nonce_str` for every HTTP exchange), and a reply is checked in
//! WeChat's documented order (SPEC §3.2, §4): protocol (`return_code`), then the reply's own
//! signature — a reply without a valid one could be forged, so it is an error —, then the
//! business result (`result_code`), and only then turned into a typed value.
//!
//! Only idempotent calls (orderquery, closeorder) are retried, a bounded number of times with
//! exponential backoff and jitter, and only on failures that may pass (transport, timeout, 5xx,
//! `SYSTEMERROR`). The backup domain (SPEC §3.1) is tried once per attempt when the main one
//! cannot be reached; for unifiedorder only when the request provably never left (connect
//! failure), because a 5xx there does not say whether WeChat created the prepay order.

use std::{sync::Arc, time::Duration};

use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

use super::{
    sign::{self, SignError, SignType},
    time::nonce_str,
    xml::{self, Fields, XmlError},
};

/// WeChat Pay's API domain.
pub const DEFAULT_BASE_URL: &str = "https://api.mch.weixin.qq.com";
/// WeChat Pay's backup domain for cross-city failover (跨城冗灾).
pub const BACKUP_BASE_URL: &str = "https://api2.mch.weixin.qq.com";

/// How often an idempotent call is tried, and how long to wait in between.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// The delay before the first retry; it doubles with each retry up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based): `base·2^(retry−1)`, capped, then a
    /// random point in its upper half, so that replicas that failed together do not retry in
    /// step.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let ceiling = self
            .base_backoff
            .saturating_mul(factor)
            .min(self.max_backoff);
        let half_ms = u64::try_from(ceiling.as_millis() / 2).unwrap_or(u64::MAX / 2);
        let jitter_ms = rand::rng().random_range(0..=half_ms);
        Duration::from_millis(half_ms.saturating_add(jitter_ms))
    }
}

/// Everything the client needs to talk to WeChat as one merchant.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// e.g. [`DEFAULT_BASE_URL`], or the simulator's address in tests.
    pub base_url: String,
    /// e.g. [`BACKUP_BASE_URL`]; `None` disables failover.
    pub backup_base_url: Option<String>,
    pub appid: String,
    pub mch_id: String,
    /// The 32-character APIv2 key. `SecretString` keeps it out of `Debug` output and logs.
    pub api_key: SecretString,
    /// The algorithm requests are signed with (replies are verified with whichever matches).
    pub sign_type: SignType,
    pub connect_timeout: Duration,
    /// The bound on one HTTP exchange, connecting included.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
}

impl ClientConfig {
    /// A configuration for WeChat's production domain with default timeouts and retries.
    pub fn new(appid: impl Into<String>, mch_id: impl Into<String>, api_key: SecretString) -> Self {
        ClientConfig {
            base_url: DEFAULT_BASE_URL.to_owned(),
            backup_base_url: None,
            appid: appid.into(),
            mch_id: mch_id.into(),
            api_key,
            sign_type: SignType::Md5,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        }
    }
}

/// The three merchant APIs this client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    UnifiedOrder,
    OrderQuery,
    CloseOrder,
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Api::UnifiedOrder => "unifiedorder",
            Api::OrderQuery => "orderquery",
            Api::CloseOrder => "closeorder",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Api::UnifiedOrder => "pay/unifiedorder",
            Api::OrderQuery => "pay/orderquery",
            Api::CloseOrder => "pay/closeorder",
        }
    }

    /// Whether sending the same call twice has the effect of sending it once.
    fn idempotent(self) -> bool {
        !matches!(self, Api::UnifiedOrder)
    }
}

impl std::fmt::Display for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a call to WeChat did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum WechatError {
    #[error("invalid WeChat client configuration: {0}")]
    Config(String),
    #[error("{api}: invalid request: {detail}")]
    InvalidRequest { api: Api, detail: String },
    #[error("{api}: timed out")]
    Timeout {
        api: Api,
        #[source]
        source: reqwest::Error,
    },
    #[error("{api}: transport error")]
    Transport {
        api: Api,
        #[source]
        source: reqwest::Error,
    },
    #[error("{api}: HTTP status {status}")]
    HttpStatus { api: Api, status: u16 },
    #[error("{api}: malformed reply: {detail}")]
    MalformedReply { api: Api, detail: String },
    #[error("{api}: reply signature rejected (possible forgery)")]
    BadSignature {
        api: Api,
        #[source]
        source: SignError,
    },
    #[error("{api}: return_code FAIL: {return_msg}")]
    ReturnFail { api: Api, return_msg: String },
    #[error("{api}: {err_code}: {err_code_des}")]
    Business {
        api: Api,
        err_code: String,
        err_code_des: String,
    },
}

impl WechatError {
    /// Whether the same call may succeed if sent again (for idempotent calls only).
    pub fn is_retryable(&self) -> bool {
        match self {
            WechatError::Timeout { .. } | WechatError::Transport { .. } => true,
            WechatError::HttpStatus { status, .. } => *status >= 500 || *status == 429,
            WechatError::Business { err_code, .. } => err_code == "SYSTEMERROR",
            WechatError::Config(_)
            | WechatError::InvalidRequest { .. }
            | WechatError::MalformedReply { .. }
            | WechatError::BadSignature { .. }
            | WechatError::ReturnFail { .. } => false,
        }
    }

    /// WeChat's `err_code` when the call failed at the business level.
    pub fn err_code(&self) -> Option<&str> {
        match self {
            WechatError::Business { err_code, .. } => Some(err_code),
            _ => None,
        }
    }

    /// The request certainly never reached WeChat.
    fn is_connect_failure(&self) -> bool {
        match self {
            WechatError::Timeout { source, .. } | WechatError::Transport { source, .. } => {
                source.is_connect()
            }
            _ => false,
        }
    }

    /// Whether to try the backup domain after the main one failed this way.
    fn warrants_backup(&self, api: Api) -> bool {
        let server_failed =
            matches!(self, WechatError::HttpStatus { status, .. } if *status >= 500);
        self.is_connect_failure() || (api.idempotent() && server_failed)
    }
}

/// `trade_state` of an order (SPEC §3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TradeState {
    Success,
    Refund,
    NotPay,
    Closed,
    Revoked,
    UserPaying,
    PayError,
    Accept,
    /// A value WeChat added after this code was written.
    Other(String),
}

impl TradeState {
    pub fn parse(value: &str) -> TradeState {
        match value {
            "SUCCESS" => TradeState::Success,
            "REFUND" => TradeState::Refund,
            "NOTPAY" => TradeState::NotPay,
            "CLOSED" => TradeState::Closed,
            "REVOKED" => TradeState::Revoked,
            "USERPAYING" => TradeState::UserPaying,
            "PAYERROR" => TradeState::PayError,
            "ACCEPT" => TradeState::Accept,
            other => TradeState::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            TradeState::Success => "SUCCESS",
            TradeState::Refund => "REFUND",
            TradeState::NotPay => "NOTPAY",
            TradeState::Closed => "CLOSED",
            TradeState::Revoked => "REVOKED",
            TradeState::UserPaying => "USERPAYING",
            TradeState::PayError => "PAYERROR",
            TradeState::Accept => "ACCEPT",
            TradeState::Other(other) => other,
        }
    }
}

impl std::fmt::Display for TradeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// WeChat's record of one order, from orderquery. Text fields WeChat did not send are empty;
/// amounts are `None` then (for a trade_state other than SUCCESS WeChat sends few fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderQuery {
    pub trade_state: TradeState,
    pub trade_state_desc: String,
    pub out_trade_no: String,
    pub transaction_id: String,
    /// The order total in fen.
    pub total_fee: Option<i64>,
    /// What the buyer paid in cash, in fen (smaller than `total_fee` with coupons).
    pub cash_fee: Option<i64>,
    pub fee_type: String,
    /// `yyyyMMddHHmmss`, Beijing time, as WeChat sent it.
    pub time_end: String,
    pub trade_type: String,
    pub bank_type: String,
    pub openid: String,
    pub attach: String,
}

/// Which order to query: WeChat's number wins when a caller has both (as at WeChat).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderRef {
    OutTradeNo(String),
    TransactionId(String),
}

/// `trade_type` of a unifiedorder request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TradeType {
    /// QR code scanned by the buyer; the reply carries `code_url`.
    Native,
    Jsapi,
    App,
    Mweb,
}

impl TradeType {
    pub fn as_str(self) -> &'static str {
        match self {
            TradeType::Native => "NATIVE",
            TradeType::Jsapi => "JSAPI",
            TradeType::App => "APP",
            TradeType::Mweb => "MWEB",
        }
    }
}

/// The business fields of a unifiedorder request (the client adds appid, mch_id, nonce, sign).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnifiedOrderRequest {
    pub out_trade_no: String,
    /// Product description; characters WeChat refuses (4-byte UTF-8, SPEC §7.6) are replaced.
    pub body: String,
    /// In fen, > 0.
    pub total_fee: i64,
    pub spbill_create_ip: String,
    pub notify_url: String,
    pub trade_type: TradeType,
    /// Required for NATIVE.
    pub product_id: Option<String>,
    /// Required for JSAPI.
    pub openid: Option<String>,
    pub attach: Option<String>,
}

/// WeChat's answer to unifiedorder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnifiedOrder {
    pub prepay_id: String,
    pub trade_type: String,
    /// The QR code content for NATIVE orders.
    pub code_url: Option<String>,
}

/// Parses an amount in fen: ASCII digits only (no sign, no decimals, no spaces), fitting i64.
pub fn parse_fen(value: &str) -> Option<i64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// The async client. Cheap to clone; one per process is enough.
#[derive(Clone)]
pub struct WechatClient {
    http: reqwest::Client,
    config: Arc<ClientConfig>,
    /// The main domain's API addresses, then the backup domain's, parsed (and checked) once
    /// rather than on every call.
    urls: Arc<(ApiUrls, Option<ApiUrls>)>,
}

/// The address of every API on one domain.
struct ApiUrls {
    unified_order: reqwest::Url,
    order_query: reqwest::Url,
    close_order: reqwest::Url,
}

impl ApiUrls {
    /// `base` (the setting named `name`) joined with each API's path; only http(s).
    fn new(name: &str, base: &str) -> Result<ApiUrls, WechatError> {
        let url = |api: Api| {
            let url = format!("{}/{}", base.trim_end_matches('/'), api.path());
            let parsed = reqwest::Url::parse(&url)
                .map_err(|e| WechatError::Config(format!("{name} `{base}`: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(WechatError::Config(format!(
                    "{name} `{base}` must be http(s)"
                )));
            }
            Ok(parsed)
        };
        Ok(ApiUrls {
            unified_order: url(Api::UnifiedOrder)?,
            order_query: url(Api::OrderQuery)?,
            close_order: url(Api::CloseOrder)?,
        })
    }

    fn of(&self, api: Api) -> &reqwest::Url {
        match api {
            Api::UnifiedOrder => &self.unified_order,
            Api::OrderQuery => &self.order_query,
            Api::CloseOrder => &self.close_order,
        }
    }
}

impl std::fmt::Debug for WechatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl WechatClient {
    pub fn new(config: ClientConfig) -> Result<WechatClient, WechatError> {
        let main = ApiUrls::new("base_url", &config.base_url)?;
        let backup = match &config.backup_base_url {
            Some(url) => Some(ApiUrls::new("backup_base_url", url)?),
            None => None,
        };
        if config.retry.max_attempts == 0 {
            return Err(WechatError::Config("retry.max_attempts must be ≥ 1".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("paynotify/", env!("CARGO_PKG_VERSION")))
            // WeChat's API answers where it is asked; a redirect is an error to report,
            // never a reason to send a signed request somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| WechatError::Config(format!("HTTP client: {e}")))?;
        Ok(WechatClient {
            http,
            config: Arc::new(config),
            urls: Arc::new((main, backup)),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Creates a prepay order. Not retried: a second unifiedorder is only harmless when every
    /// field is the same, which is for the caller to decide.
    pub async fn unified_order(
        &self,
        request: &UnifiedOrderRequest,
    ) -> Result<UnifiedOrder, WechatError> {
        let fields = unified_order_fields(request)?;
        let reply = self.call(Api::UnifiedOrder, &fields).await?;
        parse_unified_order(reply)
    }

    /// Queries one order.
    #[tracing::instrument(skip(self), level = "debug")]
    pub async fn order_query(&self, order: &OrderRef) -> Result<OrderQuery, WechatError> {
        let mut fields = Fields::new();
        match order {
            OrderRef::OutTradeNo(no) => fields.insert("out_trade_no".into(), no.clone()),
            OrderRef::TransactionId(id) => fields.insert("transaction_id".into(), id.clone()),
        };
        if fields.values().all(String::is_empty) {
            return Err(WechatError::InvalidRequest {
                api: Api::OrderQuery,
                detail: "an order number is required".into(),
            });
        }
        let reply = self.call(Api::OrderQuery, &fields).await?;
        parse_order_query(reply)
    }

    /// Closes an unpaid order at WeChat. `ORDERPAID` / `ORDERCLOSED` come back as
    /// [`WechatError::Business`] for the caller to interpret.
    pub async fn close_order(&self, out_trade_no: &str) -> Result<(), WechatError> {
        if out_trade_no.is_empty() {
            return Err(WechatError::InvalidRequest {
                api: Api::CloseOrder,
                detail: "out_trade_no is required".into(),
            });
        }
        let fields = Fields::from([("out_trade_no".to_owned(), out_trade_no.to_owned())]);
        self.call(Api::CloseOrder, &fields).await.map(|_| ())
    }

    /// One call, retried on the policy's schedule when the API is idempotent.
    async fn call(&self, api: Api, fields: &Fields) -> Result<Fields, WechatError> {
        let attempts = if api.idempotent() {
            self.config.retry.max_attempts.max(1)
        } else {
            1
        };
        let mut attempt = 1;
        loop {
            match self.call_once(api, fields).await {
                Err(err) if attempt < attempts && err.is_retryable() => {
                    let delay = self.config.retry.backoff(attempt);
                    tracing::warn!(
                        api = api.name(),
                        attempt,
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        error = %err,
                        "WeChat call failed, retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// One attempt: the main domain, then the backup one if the main could not be reached.
    async fn call_once(&self, api: Api, fields: &Fields) -> Result<Fields, WechatError> {
        let (main_urls, backup_urls) = &*self.urls;
        let main = self.exchange(main_urls, api, fields).await;
        match (main, backup_urls) {
            (Err(err), Some(backup)) if err.warrants_backup(api) => {
                tracing::warn!(api = api.name(), error = %err, "main WeChat domain failed, trying the backup domain");
                self.exchange(backup, api, fields).await
            }
            (result, _) => result,
        }
    }

    /// One HTTP exchange with a freshly signed request.
    async fn exchange(
        &self,
        urls: &ApiUrls,
        api: Api,
        fields: &Fields,
    ) -> Result<Fields, WechatError> {
        let body = signed_request(&self.config, fields);
        let classify = |source: reqwest::Error| {
            if source.is_timeout() {
                WechatError::Timeout { api, source }
            } else {
                WechatError::Transport { api, source }
            }
        };
        let mut response = self
            .http
            .post(urls.of(api).clone())
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(classify)?;
        let status = response.status();
        if !status.is_success() {
            return Err(WechatError::HttpStatus {
                api,
                status: status.as_u16(),
            });
        }
        // Read at most one byte past the parser's limit, so a huge body fails without being
        // held in memory.
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > xml::MAX_BODY_BYTES {
                break;
            }
        }
        check_reply(api, &bytes, &self.config)
    }
}

/// The request body: `fields` plus appid, mch_id, a fresh nonce_str and the signature.
pub fn signed_request(config: &ClientConfig, fields: &Fields) -> String {
    let mut fields = fields.clone();
    fields.insert("appid".into(), config.appid.clone());
    fields.insert("mch_id".into(), config.mch_id.clone());
    fields.insert("nonce_str".into(), nonce_str());
    sign::sign_fields(
        &mut fields,
        config.api_key.expose_secret(),
        config.sign_type,
    );
    xml::to_xml(&fields)
}

/// Checks a reply body in WeChat's order and returns its fields when the call succeeded.
pub fn check_reply(api: Api, body: &[u8], config: &ClientConfig) -> Result<Fields, WechatError> {
    let malformed = |detail: String| WechatError::MalformedReply { api, detail };
    let fields = xml::parse(body).map_err(|e: XmlError| malformed(e.to_string()))?;
    match fields.get("return_code").map(String::as_str) {
        Some("SUCCESS") => {}
        Some("FAIL") => {
            return Err(WechatError::ReturnFail {
                api,
                return_msg: fields.get("return_msg").cloned().unwrap_or_default(),
            });
        }
        Some(other) => return Err(malformed(format!("return_code `{other}`"))),
        None => return Err(malformed("no return_code".into())),
    }
    sign::verify(&fields, config.api_key.expose_secret())
        .map_err(|source| WechatError::BadSignature { api, source })?;
    for (name, ours) in [("appid", &config.appid), ("mch_id", &config.mch_id)] {
        if let Some(theirs) = fields.get(name)
            && theirs != ours
        {
            return Err(malformed(format!("reply is for another {name}")));
        }
    }
    match fields.get("result_code").map(String::as_str) {
        Some("SUCCESS") => Ok(fields),
        Some(_) => Err(WechatError::Business {
            api,
            err_code: fields.get("err_code").cloned().unwrap_or_default(),
            err_code_des: fields.get("err_code_des").cloned().unwrap_or_default(),
        }),
        None => Err(malformed("no result_code".into())),
    }
}

/// Turns a successful orderquery reply into its typed form.
pub fn parse_order_query(mut fields: Fields) -> Result<OrderQuery, WechatError> {
    let api = Api::OrderQuery;
    let mut take = |name: &str| fields.remove(name).unwrap_or_default();
    let trade_state = take("trade_state");
    if trade_state.is_empty() {
        return Err(WechatError::MalformedReply {
            api,
            detail: "no trade_state".into(),
        });
    }
    let total_fee = optional_fen(api, "total_fee", &take("total_fee"))?;
    let cash_fee = optional_fen(api, "cash_fee", &take("cash_fee"))?;
    Ok(OrderQuery {
        trade_state: TradeState::parse(&trade_state),
        trade_state_desc: take("trade_state_desc"),
        out_trade_no: take("out_trade_no"),
        transaction_id: take("transaction_id"),
        total_fee,
        cash_fee,
        fee_type: take("fee_type"),
        time_end: take("time_end"),
        trade_type: take("trade_type"),
        bank_type: take("bank_type"),
        openid: take("openid"),
        attach: take("attach"),
    })
}

/// Turns a successful unifiedorder reply into its typed form.
pub fn parse_unified_order(mut fields: Fields) -> Result<UnifiedOrder, WechatError> {
    let prepay_id = fields.remove("prepay_id").unwrap_or_default();
    if prepay_id.is_empty() {
        return Err(WechatError::MalformedReply {
            api: Api::UnifiedOrder,
            detail: "no prepay_id".into(),
        });
    }
    Ok(UnifiedOrder {
        prepay_id,
        trade_type: fields.remove("trade_type").unwrap_or_default(),
        code_url: fields.remove("code_url").filter(|url| !url.is_empty()),
    })
}

/// The business fields of a unifiedorder request, checked.
fn unified_order_fields(request: &UnifiedOrderRequest) -> Result<Fields, WechatError> {
    let invalid = |what: &str| WechatError::InvalidRequest {
        api: Api::UnifiedOrder,
        detail: what.to_owned(),
    };
    if request.out_trade_no.is_empty() {
        return Err(invalid("out_trade_no is required"));
    }
    if request.total_fee <= 0 {
        return Err(invalid("total_fee must be > 0 fen"));
    }
    if request.trade_type == TradeType::Native && request.product_id.is_none() {
        return Err(invalid("product_id is required for NATIVE"));
    }
    if request.trade_type == TradeType::Jsapi && request.openid.is_none() {
        return Err(invalid("openid is required for JSAPI"));
    }
    let mut fields = Fields::from([
        ("out_trade_no".to_owned(), request.out_trade_no.clone()),
        ("body".to_owned(), without_four_byte_chars(&request.body)),
        ("total_fee".to_owned(), request.total_fee.to_string()),
        (
            "spbill_create_ip".to_owned(),
            request.spbill_create_ip.clone(),
        ),
        ("notify_url".to_owned(), request.notify_url.clone()),
        (
            "trade_type".to_owned(),
            request.trade_type.as_str().to_owned(),
        ),
    ]);
    for (name, value) in [
        ("product_id", &request.product_id),
        ("openid", &request.openid),
        ("attach", &request.attach),
    ] {
        if let Some(value) = value {
            fields.insert(name.to_owned(), without_four_byte_chars(value));
        }
    }
    Ok(fields)
}

/// WeChat v2 only takes characters of 1–3 UTF-8 bytes (SPEC §4, §7.6); emoji and the like
/// make the whole request fail, so they are replaced.
fn without_four_byte_chars(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.len_utf8() == 4 { '?' } else { c })
        .collect()
}

fn optional_fen(api: Api, name: &str, value: &str) -> Result<Option<i64>, WechatError> {
    if value.is_empty() {
        return Ok(None);
    }
    parse_fen(value)
        .map(Some)
        .ok_or_else(|| WechatError::MalformedReply {
            api,
            detail: format!("{name} `{value}` is not an amount in fen"),
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;

    const KEY: &str = "T6m9iK73b0kn9g5v426MKfHQH7X8rKwb";

    fn config(base_url: &str) -> ClientConfig {
        ClientConfig {
            base_url: base_url.to_owned(),
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_millis(500),
            retry: RetryPolicy {
                max_attempts: 3,
                base_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(40),
            },
            ..ClientConfig::new("wx8397f8696b538317", "1473426802", KEY.into())
        }
    }

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A reply as WeChat signs it.
    fn signed_reply(pairs: &[(&str, &str)], sign_type: SignType) -> String {
        let mut reply = fields(&[
            ("return_code", "SUCCESS"),
            ("return_msg", "OK"),
            ("appid", "wx8397f8696b538317"),
            ("mch_id", "1473426802"),
            ("nonce_str", "abcdef"),
            ("result_code", "SUCCESS"),
        ]);
        reply.extend(fields(pairs));
        sign::sign_fields(&mut reply, KEY, sign_type);
        if sign_type == SignType::HmacSha256 {
            // WeChat's replies do not repeat sign_type; the signature length tells.
            reply.remove("sign_type");
            let mut unsigned = reply.clone();
            unsigned.remove("sign");
            reply.insert("sign".into(), sign::sign(&unsigned, KEY, sign_type));
        }
        xml::to_xml(&reply)
    }

    fn paid_reply() -> String {
        signed_reply(
            &[
                ("trade_state", "SUCCESS"),
                ("out_trade_no", "o1"),
                ("transaction_id", "4200000001"),
                ("total_fee", "2500"),
                ("cash_fee", "2000"),
                ("time_end", "20240101120000"),
                ("trade_type", "NATIVE"),
            ],
            SignType::Md5,
        )
    }

    #[test]
    fn requests_are_signed_with_a_fresh_nonce_and_verify() {
        let cfg = config("http://unused");
        let business = fields(&[("out_trade_no", "o1")]);
        let a = xml::parse(signed_request(&cfg, &business).as_bytes()).unwrap();
        let b = xml::parse(signed_request(&cfg, &business).as_bytes()).unwrap();
        assert_ne!(a["nonce_str"], b["nonce_str"]);
        assert_eq!(a["appid"], "wx8397f8696b538317");
        assert_eq!(a["mch_id"], "1473426802");
        assert_eq!(a["out_trade_no"], "o1");
        assert!(!a.contains_key("sign_type"));
        assert_eq!(sign::verify(&a, KEY), Ok(SignType::Md5));

        let hmac = ClientConfig {
            sign_type: SignType::HmacSha256,
            ..cfg
        };
        let c = xml::parse(signed_request(&hmac, &business).as_bytes()).unwrap();
        assert_eq!(c["sign_type"], "HMAC-SHA256");
        assert_eq!(c["sign"].len(), 64);
        assert_eq!(sign::verify(&c, KEY), Ok(SignType::HmacSha256));
    }

    #[test]
    fn a_signed_reply_parses_into_a_typed_order() {
        let cfg = config("http://unused");
        let reply = check_reply(Api::OrderQuery, paid_reply().as_bytes(), &cfg).unwrap();
        let query = parse_order_query(reply).unwrap();
        assert_eq!(query.trade_state, TradeState::Success);
        assert_eq!(query.out_trade_no, "o1");
        assert_eq!(query.transaction_id, "4200000001");
        assert_eq!(query.total_fee, Some(2500));
        assert_eq!(query.cash_fee, Some(2000));
        assert_eq!(query.time_end, "20240101120000");

        let hmac = signed_reply(&[("trade_state", "NOTPAY")], SignType::HmacSha256);
        let query = parse_order_query(check_reply(Api::OrderQuery, hmac.as_bytes(), &cfg).unwrap())
            .unwrap();
        assert_eq!(query.trade_state, TradeState::NotPay);
        assert_eq!(query.total_fee, None);
        assert_eq!(query.transaction_id, "");
    }

    #[test]
    fn forged_unsigned_and_foreign_replies_are_rejected() {
        let cfg = config("http://unused");
        let tampered = paid_reply().replace("2500", "1");
        assert!(matches!(
            check_reply(Api::OrderQuery, tampered.as_bytes(), &cfg),
            Err(WechatError::BadSignature { .. })
        ));

        let mut unsigned = xml::parse(paid_reply().as_bytes()).unwrap();
        unsigned.remove("sign");
        assert!(matches!(
            check_reply(Api::OrderQuery, xml::to_xml(&unsigned).as_bytes(), &cfg),
            Err(WechatError::BadSignature {
                source: SignError::MissingSign,
                ..
            })
        ));

        let other_key = ClientConfig {
            api_key: "another-key-another-key-another-k".into(),
            ..cfg.clone()
        };
        assert!(matches!(
            check_reply(Api::OrderQuery, paid_reply().as_bytes(), &other_key),
            Err(WechatError::BadSignature { .. })
        ));

        let other_merchant = ClientConfig {
            mch_id: "1900000109".into(),
            ..cfg.clone()
        };
        assert!(matches!(
            check_reply(Api::OrderQuery, paid_reply().as_bytes(), &other_merchant),
            Err(WechatError::MalformedReply { .. })
        ));
    }

    #[test]
    fn protocol_and_business_failures_are_typed() {
        let cfg = config("http://unused");
        let fail = "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[签名错误]]></return_msg></xml>";
        match check_reply(Api::OrderQuery, fail.as_bytes(), &cfg) {
            Err(WechatError::ReturnFail { return_msg, .. }) => assert_eq!(return_msg, "签名错误"),
            other => panic!("{other:?}"),
        }

        let business = signed_reply(
            &[
                ("result_code", "FAIL"),
                ("err_code", "ORDERNOTEXIST"),
                ("err_code_des", "此交易订单号不存在"),
            ],
            SignType::Md5,
        );
        let err = check_reply(Api::OrderQuery, business.as_bytes(), &cfg).unwrap_err();
        assert_eq!(err.err_code(), Some("ORDERNOTEXIST"));
        assert!(!err.is_retryable());

        let busy = signed_reply(
            &[("result_code", "FAIL"), ("err_code", "SYSTEMERROR")],
            SignType::Md5,
        );
        assert!(
            check_reply(Api::OrderQuery, busy.as_bytes(), &cfg)
                .unwrap_err()
                .is_retryable()
        );

        for junk in [
            "",
            "ok",
            "<html></html>",
            "<xml><return_code>MAYBE</return_code></xml>",
        ] {
            assert!(
                matches!(
                    check_reply(Api::OrderQuery, junk.as_bytes(), &cfg),
                    Err(WechatError::MalformedReply { .. })
                ),
                "{junk}"
            );
        }
    }

    #[test]
    fn amounts_are_digits_only() {
        assert_eq!(parse_fen("0"), Some(0));
        assert_eq!(parse_fen("2500"), Some(2500));
        for bad in [
            "",
            "-1",
            "+1",
            "1.00",
            " 1",
            "1e3",
            "１",
            "99999999999999999999",
        ] {
            assert_eq!(parse_fen(bad), None, "{bad}");
        }
        let reply = fields(&[("trade_state", "SUCCESS"), ("total_fee", "25.00")]);
        assert!(matches!(
            parse_order_query(reply),
            Err(WechatError::MalformedReply { .. })
        ));
    }

    #[test]
    fn unknown_trade_states_are_kept() {
        assert_eq!(TradeState::parse("CLOSED"), TradeState::Closed);
        let other = TradeState::parse("FROZEN");
        assert_eq!(other, TradeState::Other("FROZEN".into()));
        assert_eq!(other.as_str(), "FROZEN");
    }

    #[test]
    fn unified_order_requests_are_checked_and_cleaned() {
        let request = UnifiedOrderRequest {
            out_trade_no: "o1".into(),
            body: "tea 🍵".into(),
            total_fee: 2500,
            spbill_create_ip: "127.0.0.1".into(),
            notify_url: "https://example.com/notify".into(),
            trade_type: TradeType::Native,
            product_id: Some("o1".into()),
            openid: None,
            attach: None,
        };
        let built = unified_order_fields(&request).unwrap();
        assert_eq!(built["body"], "tea ?");
        assert_eq!(built["total_fee"], "2500");
        assert_eq!(built["trade_type"], "NATIVE");
        assert_eq!(built["product_id"], "o1");
        assert!(!built.contains_key("openid"));

        for bad in [
            UnifiedOrderRequest {
                total_fee: 0,
                ..request.clone()
            },
            UnifiedOrderRequest {
                product_id: None,
                ..request.clone()
            },
        ] {
            assert!(matches!(
                unified_order_fields(&bad),
                Err(WechatError::InvalidRequest { .. })
            ));
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!((50..=100).contains(&first.as_millis()), "{first:?}");
            let second = policy.backoff(2);
            assert!((100..=200).contains(&second.as_millis()), "{second:?}");
            let capped = policy.backoff(30);
            assert!((150..=300).contains(&capped.as_millis()), "{capped:?}");
        }
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let client = WechatClient::new(config("http://127.0.0.1:1")).unwrap();
        assert!(!format!("{client:?}").contains(KEY));
    }

    /// What the tiny test server answers, one entry per connection.
    #[derive(Clone)]
    enum Script {
        Reply(u16, String),
        /// A 307 (which keeps the method and the body) to this address.
        Redirect(String),
        /// Accept, read, never answer (a timeout).
        Hang,
    }

    /// A one-request-per-connection HTTP/1.1 server that answers from a script and records
    /// the request bodies it received.
    async fn test_server(script: Vec<Script>) -> (String, Arc<Mutex<Vec<Fields>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        tokio::spawn(async move {
            let mut script = script.into_iter();
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let step = script.next().unwrap_or(Script::Reply(500, String::new()));
                let body = read_request(&mut socket).await;
                recorded.lock().unwrap().push(xml::parse(&body).unwrap());
                match step {
                    Script::Reply(status, reply) => {
                        let head = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            reply.len()
                        );
                        let _ = socket.write_all(head.as_bytes()).await;
                        let _ = socket.write_all(reply.as_bytes()).await;
                    }
                    Script::Redirect(location) => {
                        let head = format!(
                            "HTTP/1.1 307 X\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        );
                        let _ = socket.write_all(head.as_bytes()).await;
                    }
                    Script::Hang => {
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            drop(socket);
                        });
                    }
                }
            }
        });
        (format!("http://{addr}"), seen)
    }

    async fn read_request(socket: &mut tokio::net::TcpStream) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "client closed early");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                while buf.len() < end + 4 + len {
                    let n = socket.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                return buf[end + 4..end + 4 + len].to_vec();
            }
        }
    }

    /// An address nothing listens on.
    async fn dead_address() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn orderquery_over_http_sends_a_signed_request() {
        let (base, seen) = test_server(vec![Script::Reply(200, paid_reply())]).await;
        let client = WechatClient::new(config(&base)).unwrap();
        let query = client
            .order_query(&OrderRef::OutTradeNo("o1".into()))
            .await
            .unwrap();
        assert_eq!(query.total_fee, Some(2500));
        let requests = seen.lock().unwrap();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0]["out_trade_no"], "o1");
        assert_eq!(sign::verify(&requests[0], KEY), Ok(SignType::Md5));
    }

    /// A redirect is an HTTP error like any other: the signed request is not sent on to
    /// wherever the redirect points.
    #[tokio::test]
    async fn a_redirect_is_an_error_and_is_not_followed() {
        let (elsewhere, seen_elsewhere) = test_server(vec![Script::Reply(200, paid_reply())]).await;
        let (base, seen) = test_server(vec![Script::Redirect(format!(
            "{elsewhere}/pay/orderquery"
        ))])
        .await;
        let client = WechatClient::new(config(&base)).unwrap();
        let err = client
            .order_query(&OrderRef::OutTradeNo("o1".into()))
            .await
            .unwrap_err();
        assert!(
            matches!(err, WechatError::HttpStatus { status: 307, .. }),
            "{err:?}"
        );
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert!(seen_elsewhere.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn orderquery_retries_5xx_and_systemerror_with_fresh_nonces() {
        let busy = signed_reply(
            &[("result_code", "FAIL"), ("err_code", "SYSTEMERROR")],
            SignType::Md5,
        );
        let (base, seen) = test_server(vec![
            Script::Reply(503, String::new()),
            Script::Reply(200, busy),
            Script::Reply(200, paid_reply()),
        ])
        .await;
        let client = WechatClient::new(config(&base)).unwrap();
        let query = client
            .order_query(&OrderRef::OutTradeNo("o1".into()))
            .await
            .unwrap();
        assert_eq!(query.trade_state, TradeState::Success);
        let requests = seen.lock().unwrap();
        assert_eq!(requests.len(), 3);
        assert_ne!(requests[0]["nonce_str"], requests[1]["nonce_str"]);
    }

    #[tokio::test]
    async fn retries_are_bounded_and_end_in_the_last_error() {
        let (base, seen) = test_server(vec![
            Script::Hang,
            Script::Hang,
            Script::Hang,
            Script::Reply(200, paid_reply()),
        ])
        .await;
        let client = WechatClient::new(config(&base)).unwrap();
        let started = std::time::Instant::now();
        let err = client
            .order_query(&OrderRef::OutTradeNo("o1".into()))
            .await
            .unwrap_err();
        assert!(matches!(err, WechatError::Timeout { .. }), "{err:?}");
        assert_eq!(seen.lock().unwrap().len(), 3);
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn unified_order_is_not_retried() {
        let (base, seen) = test_server(vec![
            Script::Reply(500, String::new()),
            Script::Reply(200, paid_reply()),
        ])
        .await;
        let client = WechatClient::new(config(&base)).unwrap();
        let request = UnifiedOrderRequest {
            out_trade_no: "o1".into(),
            body: "order o1".into(),
            total_fee: 1,
            spbill_create_ip: "127.0.0.1".into(),
            notify_url: "http://127.0.0.1:9010/wxpay/notify".into(),
            trade_type: TradeType::Native,
            product_id: Some("o1".into()),
            openid: None,
            attach: None,
        };
        let err = client.unified_order(&request).await.unwrap_err();
        assert!(matches!(err, WechatError::HttpStatus { status: 500, .. }));
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_backup_domain_is_used_when_the_main_one_is_down() {
        let (backup, seen) = test_server(vec![Script::Reply(200, paid_reply())]).await;
        let client = WechatClient::new(ClientConfig {
            backup_base_url: Some(backup),
            ..config(&dead_address().await)
        })
        .unwrap();
        let query = client
            .order_query(&OrderRef::TransactionId("4200000001".into()))
            .await
            .unwrap();
        assert_eq!(query.out_trade_no, "o1");
        assert_eq!(seen.lock().unwrap()[0]["transaction_id"], "4200000001");
    }

    #[tokio::test]
    async fn close_order_reports_business_errors() {
        let paid = signed_reply(
            &[("result_code", "FAIL"), ("err_code", "ORDERPAID")],
            SignType::Md5,
        );
        let (base, seen) = test_server(vec![
            Script::Reply(200, signed_reply(&[], SignType::Md5)),
            Script::Reply(200, paid),
        ])
        .await;
        let client = WechatClient::new(config(&base)).unwrap();
        client.close_order("o1").await.unwrap();
        let err = client.close_order("o2").await.unwrap_err();
        assert_eq!(err.err_code(), Some("ORDERPAID"));
        assert_eq!(seen.lock().unwrap().len(), 2);
    }
}
