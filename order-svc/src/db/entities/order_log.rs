//! `tb_order_log`: what happened to an order, one row per change, the original columns.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tb_order_log")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Sic: the original column name.
    pub operater: Option<String>,
    pub operate_time: Option<DateTime>,
    pub order_id: Option<String>,
    pub order_status: Option<String>,
    pub pay_status: Option<String>,
    pub consign_status: Option<String>,
    /// At most 100 characters.
    pub remarks: Option<String>,
    pub money: Option<i32>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
