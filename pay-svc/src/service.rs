//! The gRPC face of pay-svc (`pay.v1.PayService`): thin handlers that turn requests into calls
//! on the notification screening, the shared confirmation path and the WeChat client, and
//! errors into statuses (through the one `From<PayError> for Status`). ConfirmPayment is open
//! to the gateway's token; CreateNativePay and QueryOrder need GRPC_AUTH_TOKEN.

use std::{borrow::Cow, collections::HashMap, net::IpAddr};

use paynotify::{
    auth::require_full_access,
    proto::{
        order::v1::{Order, OrderState},
        pay::v1::{
            ConfirmPaymentRequest, ConfirmPaymentResponse, CreateNativePayRequest,
            CreateNativePayResponse, QueryOrderRequest, QueryOrderResponse,
            pay_service_server::PayService,
        },
    },
    wxpay::{
        Fields,
        client::{OrderQuery, OrderRef, TradeType, UnifiedOrderRequest},
    },
};
use secrecy::SecretString;
use tonic::{Request, Response, Status};

use crate::{
    confirm::{Confirmer, Evidence},
    error::PayError,
    metrics::{self, QuerySource},
    notification::{self, Merchant, Screening},
    orders::Orders,
    request_id,
    verdict::Source,
    wechat::Wechat,
};

/// WeChat's out_trade_no: at most 32 of `[0-9A-Za-z_-|*@]`.
const MAX_OUT_TRADE_NO: usize = 32;
/// WeChat's `body` is String(128).
const MAX_BODY_CHARS: usize = 128;

#[derive(Clone, Debug)]
pub struct PayGrpc {
    pub merchant: Merchant,
    /// `WXPAY_API_KEY_PREVIOUS`, while the key is being rotated.
    pub previous_api_key: Option<SecretString>,
    pub confirmer: Confirmer,
    pub notify_url: String,
}

impl PayGrpc {
    fn orders(&self) -> &Orders {
        &self.confirmer.orders
    }

    fn wechat(&self) -> &Wechat {
        &self.confirmer.wechat
    }

    async fn create_native_pay(
        &self,
        request: CreateNativePayRequest,
    ) -> Result<CreateNativePayResponse, PayError> {
        let id = request.out_trade_no;
        check_out_trade_no(&id)?;
        let order = self
            .orders()
            .get(&id)
            .await?
            .ok_or_else(|| PayError::OrderNotPayable(format!("order {id} does not exist")))?;
        if order.state() != OrderState::Unpaid {
            return Err(PayError::OrderNotPayable(format!(
                "order {id} is {}, not unpaid",
                order.state().as_str_name()
            )));
        }
        let body = if request.body.is_empty() {
            format!("order {id}")
        } else {
            request.body
        };
        if body.chars().count() > MAX_BODY_CHARS {
            return Err(PayError::InvalidArgument(format!(
                "body is longer than {MAX_BODY_CHARS} characters"
            )));
        }
        let client_ip = if request.client_ip.is_empty() {
            "127.0.0.1".to_owned()
        } else {
            request
                .client_ip
                .parse::<IpAddr>()
                .map_err(|_| PayError::InvalidArgument("client_ip is not an IP address".into()))?
                .to_string()
        };
        // The price is the order's, from order-svc: never the caller's.
        let unified = self
            .wechat()
            .client()
            .unified_order(&UnifiedOrderRequest {
                out_trade_no: id.clone(),
                body,
                total_fee: order.pay_money,
                spbill_create_ip: client_ip,
                notify_url: self.notify_url.clone(),
                trade_type: TradeType::Native,
                product_id: Some(id.clone()),
                openid: None,
                attach: None,
            })
            .await?;
        let code_url = unified.code_url.ok_or_else(|| {
            PayError::Wechat(paynotify::wxpay::client::WechatError::MalformedReply {
                api: paynotify::wxpay::client::Api::UnifiedOrder,
                detail: "no code_url for a NATIVE order".into(),
            })
        })?;
        // Reconciliation may have closed the order meanwhile (it had never reached WeChat):
        // a code handed out now could be paid for an order nobody watches any more.
        let still = self.orders().get(&id).await?;
        if still.as_ref().map(Order::state) != Some(OrderState::Unpaid) {
            return Err(PayError::OrderNotPayable(format!(
                "order {id} was closed while its payment was created; create a new order"
            )));
        }
        tracing::info!(total_fee = order.pay_money, "NATIVE payment created");
        Ok(CreateNativePayResponse {
            code_url,
            prepay_id: unified.prepay_id,
            total_fee: order.pay_money,
        })
    }

    async fn query_order(
        &self,
        request: QueryOrderRequest,
    ) -> Result<QueryOrderResponse, PayError> {
        let order_ref = if !request.transaction_id.is_empty() {
            OrderRef::TransactionId(request.transaction_id)
        } else if !request.out_trade_no.is_empty() {
            OrderRef::OutTradeNo(request.out_trade_no)
        } else {
            return Err(PayError::InvalidArgument(
                "out_trade_no or transaction_id is required".into(),
            ));
        };
        let query = self
            .wechat()
            .order_query(&order_ref, QuerySource::Api)
            .await?;
        Ok(query_response(query))
    }
}

#[tonic::async_trait]
impl PayService for PayGrpc {
    #[tracing::instrument(skip_all, fields(out_trade_no = %loggable(&request.get_ref().out_trade_no)))]
    async fn create_native_pay(
        &self,
        request: Request<CreateNativePayRequest>,
    ) -> Result<Response<CreateNativePayResponse>, Status> {
        // For the merchant's systems: the gateway never creates payments.
        require_full_access(&request)?;
        let id = request_id::of(&request);
        let response =
            request_id::scope(id, PayGrpc::create_native_pay(self, request.into_inner())).await?;
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all, fields(
        out_trade_no = %loggable(field(&request.get_ref().fields, "out_trade_no")),
        transaction_id = %loggable(field(&request.get_ref().fields, "transaction_id")),
    ))]
    async fn confirm_payment(
        &self,
        request: Request<ConfirmPaymentRequest>,
    ) -> Result<Response<ConfirmPaymentResponse>, Status> {
        let id = request_id::of(&request);
        let fields = request.into_inner().fields;
        let out_trade_no = field(&fields, "out_trade_no").to_owned();
        let transaction_id = field(&fields, "transaction_id").to_owned();
        let fields: Fields = fields.into_iter().collect();
        let screening = notification::screen_with_previous_key(
            &fields,
            &self.merchant,
            self.previous_api_key.as_ref(),
        );
        let verdict = match screening {
            Screening::Decided(verdict) => verdict,
            Screening::Claim(claim) => {
                let confirming = self.confirmer.confirm(&claim, Evidence::QueryWechat);
                match request_id::scope(id, confirming).await {
                    Ok(verdict) => verdict,
                    Err(err) => {
                        metrics::notification(None);
                        return Err(err.into());
                    }
                }
            }
        };
        metrics::notification(Some(verdict.outcome));
        verdict.log(
            Source::Notification,
            &loggable(&out_trade_no),
            &loggable(&transaction_id),
        );
        Ok(Response::new(
            verdict.into_response(&out_trade_no, &transaction_id),
        ))
    }

    #[tracing::instrument(skip_all, fields(out_trade_no = %loggable(&request.get_ref().out_trade_no)))]
    async fn query_order(
        &self,
        request: Request<QueryOrderRequest>,
    ) -> Result<Response<QueryOrderResponse>, Status> {
        // For the merchant's systems and operators: the gateway never queries orders.
        require_full_access(&request)?;
        Ok(Response::new(
            PayGrpc::query_order(self, request.into_inner()).await?,
        ))
    }
}

/// A field of the notification as it arrives over gRPC; empty when absent.
fn field<'a>(fields: &'a HashMap<String, String>, name: &str) -> &'a str {
    fields.get(name).map(String::as_str).unwrap_or("")
}

/// Unverified input as it may appear in a log line: bounded, control characters escaped.
fn loggable(value: &str) -> Cow<'_, str> {
    paynotify::loggable(value, MAX_OUT_TRADE_NO)
}

fn check_out_trade_no(id: &str) -> Result<(), PayError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_-|*@".contains(c);
    if id.is_empty() || id.len() > MAX_OUT_TRADE_NO || !id.chars().all(allowed) {
        return Err(PayError::InvalidArgument(format!(
            "out_trade_no must be 1 to {MAX_OUT_TRADE_NO} of [0-9A-Za-z_-|*@]"
        )));
    }
    Ok(())
}

fn query_response(query: OrderQuery) -> QueryOrderResponse {
    QueryOrderResponse {
        trade_state: query.trade_state.as_str().to_owned(),
        trade_state_desc: query.trade_state_desc,
        out_trade_no: query.out_trade_no,
        transaction_id: query.transaction_id,
        total_fee: query.total_fee.unwrap_or(0),
        cash_fee: query.cash_fee.unwrap_or(0),
        time_end: query.time_end,
        trade_type: query.trade_type,
        bank_type: query.bank_type,
        openid: query.openid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_values_are_bounded_and_single_line() {
        assert_eq!(loggable("o1"), "o1");
        assert_eq!(loggable("o1\nforged line"), "o1\\nforged line");
        assert_eq!(loggable(&"x".repeat(100)).len(), MAX_OUT_TRADE_NO);
        assert_eq!(loggable("订单"), "订单");
    }

    #[test]
    fn out_trade_no_follows_wechat_rules() {
        assert!(check_out_trade_no("2024_01-a|b*c@d").is_ok());
        for bad in ["", "a b", "订单", &"9".repeat(33)] {
            assert!(check_out_trade_no(bad).is_err(), "{bad}");
        }
    }
}
