//! WeChat Pay API v2 endpoints as WeChat answers them (SPEC §3): `/pay/unifiedorder`,
//! `/pay/orderquery`, `/pay/closeorder`. XML in, XML out. A request that fails the protocol
//! checks (XML, appid/mch_id, signature) gets `return_code` FAIL with only a `return_msg`,
//! unsigned, as WeChat does; every other answer is `return_code` SUCCESS, carries a
//! `result_code` (and `err_code` when FAIL), a fresh `nonce_str`, and is signed over all
//! fields with the merchant key, using the algorithm the request used.
//! orderquery is where the configured faults strike: latency, SYSTEMERROR, HTTP 500, no answer;
//! and, with the `unknown_field` switch, its answers carry a signed field no receiver knows.

use std::{io, net::IpAddr, sync::Arc};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use paynotify::wxpay::{
    Fields,
    sign::{SignError, SignType, verify},
    xml::{self, XmlError},
};
use tokio_util::sync::CancellationToken;
use tracing::{Span, info, instrument, warn};

use crate::{
    config::Merchant,
    error_chain,
    faults::FailMode,
    model::TradeState,
    notification::{UNKNOWN_FIELD, put_coupons, signed_xml},
    server::App,
    state::{Lookup, Order, OrderTerms, StoreError},
};

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/pay/unifiedorder", post(unified_order))
        .route("/pay/orderquery", post(order_query))
        .route("/pay/closeorder", post(close_order))
}

/// Everything a WeChat endpoint can refuse. The first group is answered with `return_code`
/// FAIL (the message is `return_msg`); the rest with `result_code` FAIL and an `err_code`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("XML格式错误")]
    Xml(#[source] XmlError),
    #[error("缺少参数{0}")]
    MissingProtocolField(&'static str),
    #[error("appid和mch_id不匹配")]
    WrongMerchant,
    #[error("签名错误")]
    Signature(#[source] SignError),

    #[error("{0}")]
    Param(String),
    #[error("该订单已支付")]
    OrderPaid,
    #[error("订单已关闭")]
    OrderClosed,
    #[error("商户订单号重复")]
    OutTradeNoUsed,
    #[error("此交易订单号不存在")]
    OrderNotExist,
    #[error("{0}，请稍后再试")]
    UserPaying(&'static str),
    #[error("系统错误")]
    SystemError,
}

impl ApiError {
    /// The `err_code` of a business error; `None` for the protocol errors.
    fn err_code(&self) -> Option<&'static str> {
        match self {
            ApiError::Xml(_)
            | ApiError::MissingProtocolField(_)
            | ApiError::WrongMerchant
            | ApiError::Signature(_) => None,
            ApiError::Param(_) => Some("PARAM_ERROR"),
            ApiError::OrderPaid => Some("ORDERPAID"),
            ApiError::OrderClosed => Some("ORDERCLOSED"),
            ApiError::OutTradeNoUsed => Some("OUT_TRADE_NO_USED"),
            ApiError::OrderNotExist => Some("ORDERNOTEXIST"),
            ApiError::UserPaying(_) => Some("USERPAYING"),
            ApiError::SystemError => Some("SYSTEMERROR"),
        }
    }

    fn missing(name: &str) -> ApiError {
        ApiError::Param(format!("缺少参数{name}"))
    }

    fn invalid(name: &str) -> ApiError {
        ApiError::Param(format!("{name}参数格式错误"))
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(_) => ApiError::OrderNotExist,
            StoreError::Paid(_) => ApiError::OrderPaid,
            StoreError::Closed(_) => ApiError::OrderClosed,
            StoreError::Exists(_) | StoreError::OutTradeNoUsed(_) => ApiError::OutTradeNoUsed,
            // closeorder while the user is paying: the micropay code for "paying, try later"
            // (inference: WeChat documents no closeorder error for it).
            StoreError::InProgress { state, .. } => ApiError::UserPaying(state.description()),
            // Control-API conditions; WeChat's APIs never meet them.
            StoreError::NotPaid { .. }
            | StoreError::TransactionIdUsed(_)
            | StoreError::PayFailed(_)
            | StoreError::InvalidCoupon { .. } => ApiError::SystemError,
        }
    }
}

#[instrument(skip_all, fields(out_trade_no))]
async fn unified_order(State(app): State<Arc<App>>, body: Bytes) -> Response {
    app.stats.unifiedorder_calls.increment();
    answer(&app.config.merchant, &body, &Fields::new(), |request| {
        let (out_trade_no, terms) = order_terms(request)?;
        Span::current().record("out_trade_no", out_trade_no);
        let device_info = terms.device_info.clone();
        let prepay = app.store.unified_order(out_trade_no, terms)?;
        let mut fields = Fields::new();
        fields.insert("prepay_id".into(), prepay.prepay_id);
        fields.insert("trade_type".into(), prepay.trade_type);
        if let Some(code_url) = prepay.code_url {
            fields.insert("code_url".into(), code_url);
        }
        if let Some(device_info) = device_info {
            fields.insert("device_info".into(), device_info);
        }
        Ok(fields)
    })
}

#[instrument(skip_all, fields(out_trade_no))]
async fn order_query(State(app): State<Arc<App>>, body: Bytes) -> Response {
    app.stats.orderquery_calls.increment();
    let extra = extra_fields(&app);
    let latency = app.faults.orderquery_latency();
    if !latency.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(latency) => {}
            () = app.shutdown.cancelled() => {}
        }
    }
    match app.faults.orderquery_failure() {
        None => {}
        Some(FailMode::SystemError) => {
            warn!("fault: orderquery answers SYSTEMERROR");
            return answer(&app.config.merchant, &body, &extra, |_| {
                Err(ApiError::SystemError)
            });
        }
        Some(FailMode::Http500) => {
            warn!("fault: orderquery answers HTTP 500");
            return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response();
        }
        Some(FailMode::Hang) => {
            warn!("fault: orderquery does not answer");
            return hang(&app.shutdown).await;
        }
    }
    answer(&app.config.merchant, &body, &extra, |request| {
        // WeChat's rule: transaction_id wins when both are given.
        let lookup = match (
            non_empty(request, "transaction_id"),
            non_empty(request, "out_trade_no"),
        ) {
            (Some(id), _) => Lookup::TransactionId(id),
            (None, Some(no)) => Lookup::OutTradeNo(no),
            (None, None) => return Err(ApiError::missing("out_trade_no或transaction_id")),
        };
        let fields = app.store.read(lookup, order_query_fields)?;
        if let Some(no) = fields.get("out_trade_no") {
            Span::current().record("out_trade_no", no.as_str());
        }
        Ok(fields)
    })
}

#[instrument(skip_all, fields(out_trade_no))]
async fn close_order(State(app): State<Arc<App>>, body: Bytes) -> Response {
    app.stats.closeorder_calls.increment();
    answer(&app.config.merchant, &body, &Fields::new(), |request| {
        let out_trade_no =
            non_empty(request, "out_trade_no").ok_or_else(|| ApiError::missing("out_trade_no"))?;
        Span::current().record("out_trade_no", out_trade_no);
        app.store.close(out_trade_no)?;
        let mut fields = Fields::new();
        fields.insert("result_msg".into(), "OK".into());
        Ok(fields)
    })
}

/// No answer until the client gives up (hyper then drops this future) or the simulator shuts
/// down, when the connection is dropped without a response: a body that fails makes hyper
/// abort it.
async fn hang(shutdown: &CancellationToken) -> Response {
    shutdown.cancelled().await;
    let broken = futures::stream::once(async {
        Err::<Bytes, io::Error>(io::Error::other("simulated orderquery outage"))
    });
    Response::new(Body::from_stream(broken))
}

/// The fields WeChat added "later" that orderquery's signed answers carry: [`UNKNOWN_FIELD`]
/// while the `unknown_field` switch is on.
fn extra_fields(app: &App) -> Fields {
    let mut extra = Fields::new();
    if app.faults.unknown_field() {
        let (name, value) = UNKNOWN_FIELD;
        extra.insert(name.into(), value.into());
    }
    extra
}

/// Authenticates the request, runs `handle` on its fields and answers as WeChat does, with
/// `extra` among the signed fields of the answer.
fn answer(
    merchant: &Merchant,
    body: &[u8],
    extra: &Fields,
    handle: impl FnOnce(&Fields) -> Result<Fields, ApiError>,
) -> Response {
    let (request, sign_type) = match authenticate(merchant, body) {
        Ok(authenticated) => authenticated,
        Err(error) => {
            warn!(error = %error_chain(&error), "request refused");
            return fail_reply(&error);
        }
    };
    let result = handle(&request);
    if let Err(error) = &result {
        info!(error = %error_chain(error), err_code = error.err_code(), "business error");
    }
    signed_reply(merchant, sign_type, extra, result)
}

/// The protocol checks: well-formed XML, this merchant, a valid signature with the declared
/// algorithm (MD5 when `sign_type` is absent).
fn authenticate(merchant: &Merchant, body: &[u8]) -> Result<(Fields, SignType), ApiError> {
    let fields = xml::parse(body).map_err(ApiError::Xml)?;
    let protocol_field =
        |name: &'static str| non_empty(&fields, name).ok_or(ApiError::MissingProtocolField(name));
    let appid = protocol_field("appid")?;
    let mch_id = protocol_field("mch_id")?;
    protocol_field("nonce_str")?;
    protocol_field("sign")?;
    if appid != merchant.appid || mch_id != merchant.mch_id {
        return Err(ApiError::WrongMerchant);
    }
    let declared = SignType::declared_by(&fields).map_err(ApiError::Signature)?;
    // `verify` also accepts the other algorithm; WeChat's server checks only the declared one.
    match verify(&fields, merchant.key()) {
        Ok(used) if used == declared => Ok((fields, declared)),
        Ok(_) => Err(ApiError::Signature(SignError::Mismatch {
            declared: declared.as_str(),
        })),
        Err(error) => Err(ApiError::Signature(error)),
    }
}

fn fail_reply(error: &ApiError) -> Response {
    let mut fields = Fields::new();
    fields.insert("return_code".into(), "FAIL".into());
    fields.insert("return_msg".into(), error.to_string());
    xml_response(xml::to_xml(&fields))
}

fn signed_reply(
    merchant: &Merchant,
    sign_type: SignType,
    extra: &Fields,
    result: Result<Fields, ApiError>,
) -> Response {
    let mut fields = match result {
        Ok(mut fields) => {
            fields.insert("result_code".into(), "SUCCESS".into());
            fields
        }
        Err(error) => match error.err_code() {
            None => return fail_reply(&error),
            Some(code) => {
                let mut fields = Fields::new();
                fields.insert("result_code".into(), "FAIL".into());
                fields.insert("err_code".into(), code.into());
                fields.insert("err_code_des".into(), error.to_string());
                fields
            }
        },
    };
    fields.insert("return_code".into(), "SUCCESS".into());
    fields.insert("return_msg".into(), "OK".into());
    fields.insert("appid".into(), merchant.appid.clone());
    fields.insert("mch_id".into(), merchant.mch_id.clone());
    for (name, value) in extra {
        fields.entry(name.clone()).or_insert_with(|| value.clone());
    }
    xml_response(signed_xml(fields, merchant.key(), sign_type))
}

fn xml_response(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"))],
        body,
    )
        .into_response()
}

/// orderquery's answer for an order (SPEC §3.2): `trade_state` and `trade_state_desc`, and
/// `out_trade_no` always; the payment's fields only while `trade_state` is SUCCESS. In any
/// other state WeChat returns "only out_trade_no (always) and attach (optional)": `attach`
/// when the order was paid (REFUND), since WeChat echoes it for paid orders only. So a
/// refunded order's answer has no transaction_id, total_fee or time_end.
fn order_query_fields(order: &Order) -> Fields {
    let mut fields = Fields::new();
    let mut put = |name: &str, value: String| {
        fields.insert(name.to_owned(), value);
    };
    put("out_trade_no", order.out_trade_no.clone());
    put("trade_state", order.state.as_str().into());
    put("trade_state_desc", order.state.description().into());
    let terms = &order.terms;
    let Some(payment) = &order.payment else {
        return fields;
    };
    if let Some(attach) = &terms.attach {
        put("attach", attach.clone());
    }
    if order.state != TradeState::Success {
        return fields;
    }
    put("openid", payment.openid.clone());
    put("is_subscribe", payment.is_subscribe.clone());
    put("trade_type", terms.trade_type.clone());
    put("bank_type", payment.bank_type.clone());
    put("total_fee", terms.total_fee.to_string());
    put("cash_fee", payment.cash_fee(terms.total_fee).to_string());
    put("fee_type", terms.fee_type.clone());
    put("transaction_id", payment.transaction_id.clone());
    put(
        "time_end",
        paynotify::wxpay::time::format_time_end(payment.time_end),
    );
    if let Some(device_info) = &terms.device_info {
        put("device_info", device_info.clone());
    }
    put_coupons(&mut fields, &payment.coupons);
    fields
}

/// unifiedorder's parameter checks, returning the out_trade_no and the order's terms.
fn order_terms(request: &Fields) -> Result<(&str, OrderTerms), ApiError> {
    let required = |name: &str| non_empty(request, name).ok_or_else(|| ApiError::missing(name));

    let out_trade_no = required("out_trade_no")?;
    let charset_ok = out_trade_no
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-|*@".contains(&b));
    if out_trade_no.len() > 32 || !charset_ok {
        return Err(ApiError::invalid("out_trade_no"));
    }

    let body = required("body")?;
    if !fits(body, 128) {
        return Err(ApiError::invalid("body"));
    }

    let total_fee = required("total_fee")?;
    let total_fee = total_fee
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| total_fee.parse::<i64>().ok())
        .flatten()
        .filter(|&fen| fen > 0)
        .ok_or_else(|| ApiError::invalid("total_fee"))?;

    let fee_type = non_empty(request, "fee_type").unwrap_or("CNY");
    if fee_type != "CNY" {
        return Err(ApiError::invalid("fee_type"));
    }

    required("spbill_create_ip")?
        .parse::<IpAddr>()
        .map_err(|_| ApiError::invalid("spbill_create_ip"))?;

    let notify_url = required("notify_url")?;
    if !valid_notify_url(notify_url) {
        return Err(ApiError::invalid("notify_url"));
    }

    let trade_type = required("trade_type")?;
    if !["JSAPI", "NATIVE", "APP", "MWEB"].contains(&trade_type) {
        return Err(ApiError::invalid("trade_type"));
    }
    let product_id = non_empty(request, "product_id");
    if trade_type == "NATIVE" {
        let product_id = product_id.ok_or_else(|| ApiError::missing("product_id"))?;
        if !fits(product_id, 32) {
            return Err(ApiError::invalid("product_id"));
        }
    }
    let openid = non_empty(request, "openid");
    if trade_type == "JSAPI" && openid.is_none() {
        return Err(ApiError::missing("openid"));
    }

    let attach = non_empty(request, "attach");
    if attach.is_some_and(|attach| !fits(attach, 127)) {
        return Err(ApiError::invalid("attach"));
    }

    let owned = |value: Option<&str>| value.map(str::to_owned);
    let terms = OrderTerms {
        body: body.to_owned(),
        total_fee,
        fee_type: fee_type.to_owned(),
        trade_type: trade_type.to_owned(),
        notify_url: notify_url.to_owned(),
        product_id: owned(product_id),
        openid: owned(openid),
        attach: owned(attach),
        device_info: owned(non_empty(request, "device_info")),
    };
    Ok((out_trade_no, terms))
}

/// An absolute http(s) URL with a host and no query string (SPEC §1.1). Unlike WeChat, local
/// addresses are allowed: that is the simulator's point.
pub(crate) fn valid_notify_url(url: &str) -> bool {
    url.len() <= 256
        && reqwest::Url::parse(url).is_ok_and(|parsed| {
            matches!(parsed.scheme(), "http" | "https")
                && parsed.host().is_some()
                && parsed.query().is_none()
                && parsed.fragment().is_none()
        })
}

/// At most `max` characters, none of them outside the 1–3-byte UTF-8 range WeChat accepts
/// (SPEC §1.1: no emoji).
fn fits(value: &str, max: usize) -> bool {
    value.chars().count() <= max && value.chars().all(|c| c.len_utf8() <= 3)
}

fn non_empty<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields
        .get(name)
        .map(String::as_str)
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn native_order() -> Fields {
        request(&[
            ("out_trade_no", "A-1_x|y*z@w"),
            ("body", "测试商品"),
            ("total_fee", "1999"),
            ("spbill_create_ip", "127.0.0.1"),
            ("notify_url", "http://127.0.0.1:8080/wxpay/notify"),
            ("trade_type", "NATIVE"),
            ("product_id", "P1"),
        ])
    }

    fn param_error(fields: &Fields) -> String {
        match order_terms(fields) {
            Err(ApiError::Param(message)) => message,
            other => panic!("expected PARAM_ERROR, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_native_order_is_accepted() {
        let fields = native_order();
        let (no, terms) = order_terms(&fields).unwrap();
        assert_eq!(no, "A-1_x|y*z@w");
        assert_eq!(terms.total_fee, 1999);
        assert_eq!(terms.fee_type, "CNY");
        assert_eq!(terms.product_id.as_deref(), Some("P1"));
    }

    #[test]
    fn bad_parameters_are_param_errors_naming_the_field() {
        let with = |name: &str, value: &str| {
            let mut fields = native_order();
            fields.insert(name.into(), value.into());
            fields
        };
        let without = |name: &str| {
            let mut fields = native_order();
            fields.remove(name);
            fields
        };
        assert_eq!(
            param_error(&with("total_fee", "0")),
            "total_fee参数格式错误"
        );
        assert_eq!(
            param_error(&with("total_fee", "1.5")),
            "total_fee参数格式错误"
        );
        assert_eq!(
            param_error(&with("total_fee", "-1")),
            "total_fee参数格式错误"
        );
        assert_eq!(
            param_error(&with("total_fee", "+1")),
            "total_fee参数格式错误"
        );
        assert_eq!(
            param_error(&with("out_trade_no", "A 1")),
            "out_trade_no参数格式错误"
        );
        assert_eq!(
            param_error(&with("out_trade_no", &"1".repeat(33))),
            "out_trade_no参数格式错误"
        );
        assert_eq!(
            param_error(&with("notify_url", "http://a/notify?x=1")),
            "notify_url参数格式错误"
        );
        assert_eq!(
            param_error(&with("notify_url", "ftp://a/notify")),
            "notify_url参数格式错误"
        );
        assert_eq!(
            param_error(&with("spbill_create_ip", "x")),
            "spbill_create_ip参数格式错误"
        );
        assert_eq!(
            param_error(&with("trade_type", "CARD")),
            "trade_type参数格式错误"
        );
        assert_eq!(param_error(&with("body", "🍎")), "body参数格式错误");
        assert_eq!(
            param_error(&with("fee_type", "USD")),
            "fee_type参数格式错误"
        );
        assert_eq!(param_error(&without("product_id")), "缺少参数product_id");
        assert_eq!(param_error(&without("body")), "缺少参数body");
        assert_eq!(param_error(&with("trade_type", "JSAPI")), "缺少参数openid");
    }

    #[test]
    fn protocol_errors_have_no_err_code() {
        assert_eq!(ApiError::WrongMerchant.err_code(), None);
        assert_eq!(ApiError::SystemError.err_code(), Some("SYSTEMERROR"));
        assert_eq!(
            ApiError::Signature(SignError::MissingSign).to_string(),
            "签名错误"
        );
    }
}
