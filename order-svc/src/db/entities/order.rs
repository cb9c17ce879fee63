//! `tb_order`: one row per order, exactly the original system's columns.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tb_order")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub total_num: Option<i32>,
    /// Fen, like every money column.
    pub total_money: Option<i32>,
    pub pre_money: Option<i32>,
    pub post_fee: Option<i32>,
    pub pay_money: Option<i32>,
    pub pay_type: Option<String>,
    /// All times are naive UTC.
    pub create_time: Option<DateTime>,
    pub update_time: Option<DateTime>,
    pub pay_time: Option<DateTime>,
    pub consign_time: Option<DateTime>,
    pub end_time: Option<DateTime>,
    pub close_time: Option<DateTime>,
    pub shipping_name: Option<String>,
    pub shipping_code: Option<String>,
    pub username: Option<String>,
    pub buyer_message: Option<String>,
    pub buyer_rate: Option<String>,
    pub receiver_contact: Option<String>,
    pub receiver_mobile: Option<String>,
    pub receiver_address: Option<String>,
    pub source_type: Option<String>,
    pub transaction_id: Option<String>,
    pub order_status: Option<String>,
    pub pay_status: Option<String>,
    pub consign_status: Option<String>,
    pub is_delete: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
