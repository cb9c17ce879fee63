//! What the database says after a run, read with plain SQL over the original `changgou`
//! columns (not through order-svc, whose answers are what is under test), and the
//! exactly-once checks over it.

use std::collections::HashMap;

use anyhow::Context;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, QueryResult, Statement};

/// One `tb_order` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRow {
    pub pay_status: String,
    pub order_status: String,
    pub transaction_id: Option<String>,
}

/// One `tb_order_log` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRow {
    pub pay_status: Option<String>,
    pub order_status: Option<String>,
    pub remarks: Option<String>,
}

/// Every order and every log row.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    pub orders: HashMap<String, OrderRow>,
    pub logs: HashMap<String, Vec<LogRow>>,
}

impl Ledger {
    /// Reads `tb_order` and `tb_order_log` of the database at `database_url`.
    pub async fn read(database_url: &str) -> anyhow::Result<Ledger> {
        let mut options = ConnectOptions::new(database_url.to_owned());
        options.max_connections(1).sqlx_logging(false);
        let db = Database::connect(options)
            .await
            .context("connecting to the database under test")?;
        let backend = db.get_database_backend();
        let query = |sql: &str| db.query_all_raw(Statement::from_string(backend, sql.to_owned()));
        let text = |row: &QueryResult, column: &str| -> anyhow::Result<Option<String>> {
            row.try_get::<Option<String>>("", column)
                .with_context(|| format!("reading column {column}"))
        };

        let mut ledger = Ledger::default();
        for row in
            query("SELECT id, pay_status, order_status, transaction_id FROM tb_order").await?
        {
            let id = text(&row, "id")?.unwrap_or_default();
            ledger.orders.insert(
                id,
                OrderRow {
                    pay_status: text(&row, "pay_status")?.unwrap_or_default(),
                    order_status: text(&row, "order_status")?.unwrap_or_default(),
                    transaction_id: text(&row, "transaction_id")?,
                },
            );
        }
        for row in
            query("SELECT order_id, pay_status, order_status, remarks FROM tb_order_log").await?
        {
            ledger
                .logs
                .entry(text(&row, "order_id")?.unwrap_or_default())
                .or_default()
                .push(LogRow {
                    pay_status: text(&row, "pay_status")?,
                    order_status: text(&row, "order_status")?,
                    remarks: text(&row, "remarks")?,
                });
        }
        db.close().await?;
        Ok(ledger)
    }

    /// Whether the order is paid (`pay_status` '1', `order_status` '1').
    pub fn is_paid(&self, id: &str) -> bool {
        self.orders
            .get(id)
            .is_some_and(|o| o.pay_status == "1" && o.order_status == "1")
    }

    /// How many of `ids` are paid.
    pub fn paid_count<'a>(&self, ids: impl IntoIterator<Item = &'a String>) -> usize {
        ids.into_iter().filter(|id| self.is_paid(id)).count()
    }

    /// Problems with "each order in `expected` (id → WeChat transaction_id) is paid by that
    /// transaction with exactly one log row, a paid one"; empty when all is well.
    pub fn paid_exactly_once(&self, expected: &HashMap<String, String>) -> Vec<String> {
        let mut problems = Vec::new();
        for (id, transaction_id) in expected {
            match self.orders.get(id) {
                None => problems.push(format!("{id}: no such order")),
                Some(order) => {
                    if !(order.pay_status == "1" && order.order_status == "1") {
                        problems.push(format!("{id}: not paid: {order:?}"));
                    } else if order.transaction_id.as_deref() != Some(transaction_id) {
                        problems.push(format!(
                            "{id}: paid by {:?}, WeChat says {transaction_id}",
                            order.transaction_id
                        ));
                    }
                }
            }
            let logs = self.logs.get(id).map(Vec::as_slice).unwrap_or_default();
            let paid_rows = logs
                .iter()
                .filter(|l| l.pay_status.as_deref() == Some("1"))
                .count();
            if paid_rows != 1 || logs.len() != 1 {
                problems.push(format!(
                    "{id}: {paid_rows} paid log rows, {} in all: {logs:?}",
                    logs.len()
                ));
            }
        }
        problems
    }

    /// Problems with "each of `ids` is unpaid and open, with no transaction and no log row".
    pub fn untouched<'a>(&self, ids: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        let mut problems = Vec::new();
        for id in ids {
            match self.orders.get(id) {
                None => problems.push(format!("{id}: no such order")),
                Some(order)
                    if order.pay_status != "0"
                        || order.order_status != "0"
                        || order
                            .transaction_id
                            .as_deref()
                            .is_some_and(|t| !t.is_empty()) =>
                {
                    problems.push(format!("{id}: changed: {order:?}"));
                }
                Some(_) => {}
            }
            if let Some(logs) = self.logs.get(id).filter(|l| !l.is_empty()) {
                problems.push(format!("{id}: has log rows: {logs:?}"));
            }
        }
        problems
    }

    /// Log rows in all.
    pub fn log_rows(&self) -> usize {
        self.logs.values().map(Vec::len).sum()
    }
}

/// Fails with the first problems (and how many there were) unless `problems` is empty.
pub fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problems, first ones:\n{}",
        problems.len(),
        problems
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
