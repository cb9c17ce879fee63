//! `CreateOrder`: a new unpaid order, under the caller's id or a fresh snowflake id.

use sea_orm::{ActiveValue::Set, EntityTrait, NotSet};

use super::OrderStore;
use super::write::insert_if_absent;
use crate::db::entities::{
    NOT_CONSIGNED, NOT_DELETED, PAY_ONLINE, order, order_status, pay_status,
};
use crate::domain::{NewOrder, now_utc};
use crate::error::OrderError;
use crate::ids;

impl OrderStore {
    pub async fn create_order(&self, new: &NewOrder) -> Result<order::Model, OrderError> {
        for _ in 0..ids::MAX_ATTEMPTS {
            let id = new.id.clone().unwrap_or_else(ids::next_id);
            if insert_if_absent(&self.db, order::Entity::insert(unpaid_row(&id, new))).await? {
                return self.get_order(&id).await;
            }
            if new.id.is_some() {
                return Err(OrderError::AlreadyExists { order_id: id });
            }
            tracing::warn!(order_id = %id, "generated order id collided, drawing another");
        }
        Err(OrderError::IdsExhausted {
            what: "order",
            attempts: ids::MAX_ATTEMPTS,
        })
    }
}

/// The row the original system writes for a new online-payment order.
fn unpaid_row(id: &str, new: &NewOrder) -> order::ActiveModel {
    let now = now_utc();
    order::ActiveModel {
        id: Set(id.to_owned()),
        total_num: Set(Some(new.total_num)),
        total_money: Set(Some(new.total_money)),
        pre_money: Set(Some(new.total_money.saturating_sub(new.pay_money).max(0))),
        post_fee: Set(Some(0)),
        pay_money: Set(Some(new.pay_money)),
        pay_type: Set(Some(PAY_ONLINE.to_owned())),
        create_time: Set(Some(now)),
        update_time: Set(Some(now)),
        username: Set(new.username.clone()),
        order_status: Set(Some(order_status::CREATED.to_owned())),
        pay_status: Set(Some(pay_status::UNPAID.to_owned())),
        consign_status: Set(Some(NOT_CONSIGNED.to_owned())),
        is_delete: Set(Some(NOT_DELETED.to_owned())),
        pay_time: NotSet,
        consign_time: NotSet,
        end_time: NotSet,
        close_time: NotSet,
        shipping_name: NotSet,
        shipping_code: NotSet,
        buyer_message: NotSet,
        buyer_rate: NotSet,
        receiver_contact: NotSet,
        receiver_mobile: NotSet,
        receiver_address: NotSet,
        source_type: NotSet,
        transaction_id: NotSet,
    }
}
