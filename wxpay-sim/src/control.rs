//! The control API (JSON, under `/sim`): what a tester does in place of a real user and
//! WeChat's back office — pay an order (in cash or partly with a coupon), move an unpaid order
//! to the states a user's bank or terminal causes, inspect its notification attempts, place
//! orders directly, read or replay notifications, read counters, set faults. Shapes are in
//! [`crate::model`].

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State, rejection::JsonRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tracing::{info, instrument};

use crate::{
    api::valid_notify_url,
    delivery,
    faults::{Faults, FaultsError},
    model::{
        ErrorBody, NewOrder, PayRequest, PayResult, ReplayRequest, ReplayResult,
        SignedNotification, SimOrder, SimStats, TradeState, TradeStateRequest,
    },
    server::App,
    state::{OrderTerms, StoreError},
};

/// The body of orders placed without one.
const DEFAULT_BODY: &str = "wxpay-sim order";

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/sim/pay", post(pay))
        .route("/sim/orders", post(create_order))
        .route("/sim/orders/{out_trade_no}", get(order))
        .route("/sim/orders/{out_trade_no}/notify", post(replay))
        .route("/sim/orders/{out_trade_no}/notification", get(notification))
        .route("/sim/orders/{out_trade_no}/refund", post(refund))
        .route(
            "/sim/orders/{out_trade_no}/trade_state",
            post(set_trade_state),
        )
        .route("/sim/stats", get(stats))
        .route("/sim/faults", get(faults).put(set_faults))
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ControlError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Faults(#[from] FaultsError),
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = match &self {
            ControlError::BadRequest(_)
            | ControlError::Faults(_)
            | ControlError::Store(StoreError::InvalidCoupon { .. }) => StatusCode::BAD_REQUEST,
            ControlError::Store(StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
            ControlError::Store(_) => StatusCode::CONFLICT,
        };
        let body = ErrorBody {
            error: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}

impl From<JsonRejection> for ControlError {
    fn from(rejection: JsonRejection) -> Self {
        ControlError::BadRequest(rejection.body_text())
    }
}

#[instrument(skip_all, fields(out_trade_no))]
async fn pay(
    State(app): State<Arc<App>>,
    request: Result<Json<PayRequest>, JsonRejection>,
) -> Result<Json<PayResult>, ControlError> {
    let Json(request) = request?;
    tracing::Span::current().record("out_trade_no", request.out_trade_no.as_str());
    if let Some(id) = &request.transaction_id
        && (id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return Err(ControlError::BadRequest(
            "transaction_id must be 1 to 32 letters and digits".into(),
        ));
    }
    let payment = app.store.mark_paid_as(
        &request.out_trade_no,
        request.transaction_id.as_deref(),
        request.coupon_fee,
    )?;
    let total_fee = app.store.view(&request.out_trade_no)?.total_fee;
    let cash_fee = payment.cash_fee(total_fee);
    info!(
        transaction_id = %payment.transaction_id,
        total_fee,
        cash_fee,
        notify = request.notify,
        "order paid"
    );
    if request.notify {
        delivery::start_schedule(&app, &request.out_trade_no)?;
    }
    Ok(Json(PayResult {
        transaction_id: payment.transaction_id,
        total_fee,
        cash_fee,
    }))
}

/// Moves an unpaid order to a state only a user's terminal or bank causes. SUCCESS, REFUND
/// and CLOSED have their own ways in (`/sim/pay`, `/refund`, closeorder).
#[instrument(skip_all, fields(out_trade_no = %out_trade_no))]
async fn set_trade_state(
    State(app): State<Arc<App>>,
    Path(out_trade_no): Path<String>,
    request: Result<Json<TradeStateRequest>, JsonRejection>,
) -> Result<Json<SimOrder>, ControlError> {
    let Json(TradeStateRequest { trade_state }) = request?;
    match trade_state {
        TradeState::UserPaying
        | TradeState::Accept
        | TradeState::PayError
        | TradeState::Revoked
        | TradeState::NotPay => {}
        TradeState::Success | TradeState::Refund | TradeState::Closed => {
            return Err(ControlError::BadRequest(format!(
                "trade_state {trade_state} is reached through /sim/pay, /refund or closeorder; \
                 this sets USERPAYING, ACCEPT, PAYERROR, REVOKED or NOTPAY"
            )));
        }
    }
    let order = app.store.set_trade_state(&out_trade_no, trade_state)?;
    info!(%trade_state, "trade_state set");
    Ok(Json(order))
}

#[instrument(skip_all, fields(out_trade_no))]
async fn create_order(
    State(app): State<Arc<App>>,
    request: Result<Json<NewOrder>, JsonRejection>,
) -> Result<(StatusCode, Json<SimOrder>), ControlError> {
    let Json(new) = request?;
    tracing::Span::current().record("out_trade_no", new.out_trade_no.as_str());
    if new.out_trade_no.is_empty() || new.out_trade_no.len() > 32 {
        return Err(ControlError::BadRequest(
            "out_trade_no must be 1 to 32 characters".into(),
        ));
    }
    if new.total_fee <= 0 {
        return Err(ControlError::BadRequest(
            "total_fee must be a positive number of fen".into(),
        ));
    }
    if !valid_notify_url(&new.notify_url) {
        return Err(ControlError::BadRequest(
            "notify_url must be an http(s) URL without a query string".into(),
        ));
    }
    let terms = OrderTerms {
        body: new.body.unwrap_or_else(|| DEFAULT_BODY.into()),
        total_fee: new.total_fee,
        fee_type: "CNY".into(),
        trade_type: "NATIVE".into(),
        notify_url: new.notify_url,
        product_id: Some(new.out_trade_no.clone()),
        openid: None,
        attach: new.attach,
        device_info: None,
    };
    let order = app.store.create(&new.out_trade_no, terms)?;
    Ok((StatusCode::CREATED, Json(order)))
}

async fn order(
    State(app): State<Arc<App>>,
    Path(out_trade_no): Path<String>,
) -> Result<Json<SimOrder>, ControlError> {
    Ok(Json(app.store.view(&out_trade_no)?))
}

/// Delivers the notification once now and answers with the attempts made, or (with
/// `restart_schedule`) starts WeChat's retry schedule afresh in the background.
#[instrument(skip_all, fields(out_trade_no = %out_trade_no))]
async fn replay(
    State(app): State<Arc<App>>,
    Path(out_trade_no): Path<String>,
    request: Result<Option<Json<ReplayRequest>>, JsonRejection>,
) -> Result<Json<ReplayResult>, ControlError> {
    let request = request?.map(|Json(r)| r).unwrap_or_default();
    if request.restart_schedule {
        delivery::start_schedule(&app, &out_trade_no)?;
        return Ok(Json(ReplayResult {
            scheduled: true,
            attempts: Vec::new(),
        }));
    }
    let attempts = delivery::deliver_once(&app, &out_trade_no).await?;
    Ok(Json(ReplayResult {
        scheduled: false,
        attempts,
    }))
}

/// The notification the next attempt would send, unsent.
async fn notification(
    State(app): State<Arc<App>>,
    Path(out_trade_no): Path<String>,
) -> Result<Json<SignedNotification>, ControlError> {
    let (body, notify_url) = delivery::signed_body(&app, &out_trade_no)?;
    Ok(Json(SignedNotification { notify_url, body }))
}

/// Marks a paid order as being refunded (trade_state REFUND), for orderquery tests.
async fn refund(
    State(app): State<Arc<App>>,
    Path(out_trade_no): Path<String>,
) -> Result<Json<SimOrder>, ControlError> {
    Ok(Json(app.store.refund(&out_trade_no)?))
}

async fn stats(State(app): State<Arc<App>>) -> Json<SimStats> {
    Json(app.stats.snapshot())
}

async fn faults(State(app): State<Arc<App>>) -> Json<Faults> {
    Json(app.faults.get())
}

/// Replaces the whole fault set; fields left out take their neutral defaults.
async fn set_faults(
    State(app): State<Arc<App>>,
    request: Result<Json<Faults>, JsonRejection>,
) -> Result<Json<Faults>, ControlError> {
    let Json(faults) = request?;
    app.faults.set(faults)?;
    let faults = app.faults.get();
    info!(?faults, "faults set");
    Ok(Json(faults))
}
