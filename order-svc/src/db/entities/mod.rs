//! SeaORM entities for the three tables. `tb_order` and `tb_order_log` mirror the original
//! system's MySQL columns one to one (including the misspelt `operater`), so rows written by
//! either system read the same; every column but the key is nullable, as it is there.

pub mod order;
pub mod order_log;
pub mod pay_anomaly;

/// `tb_order.pay_status`.
pub mod pay_status {
    pub const UNPAID: &str = "0";
    pub const PAID: &str = "1";
}

/// `tb_order.order_status`.
pub mod order_status {
    pub const CREATED: &str = "0";
    pub const PAID: &str = "1";
    pub const CLOSED: &str = "2";
}

/// `tb_order.consign_status`: nothing is shipped by this service.
pub const NOT_CONSIGNED: &str = "0";
/// `tb_order.is_delete`.
pub const NOT_DELETED: &str = "0";
/// `tb_order.pay_type`: online payment.
pub const PAY_ONLINE: &str = "1";
/// `tb_order_log.operater` for changes made on behalf of WeChat's notifications.
pub const SYSTEM_OPERATOR: &str = "system";
