//! The database after the run, read directly: every order the run paid is paid exactly once,
//! by the expected transaction, with exactly one paid log row of the order's amount and no
//! anomaly. Anything else is
//! a correctness failure, however fast the run was.

use std::collections::HashMap;

use anyhow::bail;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

/// Ids per `IN (...)` list.
const CHUNK: usize = 500;

/// An order the run expects to be paid by `transaction_id`.
#[derive(Clone, Debug)]
pub struct Expected {
    pub order_id: String,
    pub transaction_id: String,
}

/// What the check found.
#[derive(Debug, Default)]
pub struct Report {
    pub checked: usize,
    pub problems: Vec<String>,
    /// Total problems (only the first few are kept as text).
    pub problem_count: usize,
}

impl Report {
    fn problem(&mut self, text: String) {
        self.problem_count += 1;
        if self.problems.len() < 20 {
            self.problems.push(text);
        }
    }

    pub fn ok(&self) -> bool {
        self.problem_count == 0
    }
}

/// Checks every expected order.
pub async fn paid_exactly_once(
    db: &DatabaseConnection,
    expected: &[Expected],
) -> anyhow::Result<Report> {
    let backend = db.get_database_backend();
    let mut report = Report::default();
    for chunk in expected.chunks(CHUNK) {
        let list = in_list(chunk.iter().map(|e| e.order_id.as_str()))?;
        let orders = db
            .query_all_raw(Statement::from_string(
                backend,
                format!(
                    "SELECT id, pay_status, order_status, transaction_id, pay_money FROM tb_order \
                     WHERE id IN ({list})"
                ),
            ))
            .await?;
        let mut found: HashMap<String, (String, String, String)> = HashMap::new();
        let mut amounts: HashMap<String, Option<i32>> = HashMap::new();
        for row in orders {
            let id: String = row.try_get("", "id")?;
            let pay: Option<String> = row.try_get("", "pay_status")?;
            let status: Option<String> = row.try_get("", "order_status")?;
            let transaction: Option<String> = row.try_get("", "transaction_id")?;
            amounts.insert(id.clone(), row.try_get("", "pay_money")?);
            found.insert(
                id,
                (
                    pay.unwrap_or_default(),
                    status.unwrap_or_default(),
                    transaction.unwrap_or_default(),
                ),
            );
        }
        let logs = db
            .query_all_raw(Statement::from_string(
                backend,
                format!(
                    "SELECT order_id, pay_status, money FROM tb_order_log \
                     WHERE order_id IN ({list})"
                ),
            ))
            .await?;
        let mut paid_logs: HashMap<String, usize> = HashMap::new();
        let mut all_logs: HashMap<String, usize> = HashMap::new();
        for row in logs {
            let order_id: Option<String> = row.try_get("", "order_id")?;
            let pay: Option<String> = row.try_get("", "pay_status")?;
            let money: Option<i32> = row.try_get("", "money")?;
            let order_id = order_id.unwrap_or_default();
            *all_logs.entry(order_id.clone()).or_default() += 1;
            if pay.as_deref() == Some("1") {
                let pay_money = amounts.get(&order_id).copied().flatten();
                if money != pay_money {
                    report.problem(format!(
                        "order {order_id}: paid log row of {money:?} fen, the order is {pay_money:?}"
                    ));
                }
                *paid_logs.entry(order_id).or_default() += 1;
            }
        }
        let anomalies = db
            .query_all_raw(Statement::from_string(
                backend,
                format!("SELECT order_id FROM pay_anomaly WHERE order_id IN ({list})"),
            ))
            .await?;
        for row in anomalies {
            let order_id: String = row.try_get("", "order_id")?;
            report.problem(format!("order {order_id}: a payment anomaly was recorded"));
        }

        for expected in chunk {
            report.checked += 1;
            let id = &expected.order_id;
            match found.get(id) {
                None => report.problem(format!("order {id}: not in tb_order")),
                Some((pay, status, transaction)) => {
                    if pay != "1" || status != "1" {
                        report.problem(format!(
                            "order {id}: pay_status {pay:?}, order_status {status:?}, expected \
                             paid (1, 1)"
                        ));
                    }
                    if transaction != &expected.transaction_id {
                        report.problem(format!(
                            "order {id}: transaction_id {transaction:?}, expected {:?}",
                            expected.transaction_id
                        ));
                    }
                }
            }
            let paid = paid_logs.get(id).copied().unwrap_or(0);
            let all = all_logs.get(id).copied().unwrap_or(0);
            if paid != 1 || all != 1 {
                report.problem(format!(
                    "order {id}: {all} log row(s), {paid} of them paid; expected exactly one paid"
                ));
            }
        }
    }
    Ok(report)
}

/// `'a','b',...` for ids the benchmark itself got from order-svc (digits, or the
/// `[0-9A-Za-z_-|*@]` WeChat allows); anything else is refused rather than quoted.
fn in_list<'a>(ids: impl Iterator<Item = &'a str>) -> anyhow::Result<String> {
    let mut list = String::new();
    for id in ids {
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-|*@".contains(&b))
        {
            bail!("unexpected order id {id:?}");
        }
        if !list.is_empty() {
            list.push(',');
        }
        list.push('\'');
        list.push_str(id);
        list.push('\'');
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_lists_quote_safe_ids_and_refuse_others() {
        assert_eq!(in_list(["1", "a_b"].into_iter()).unwrap(), "'1','a_b'");
        assert!(in_list(["x'; DROP TABLE tb_order; --"].into_iter()).is_err());
    }
}
