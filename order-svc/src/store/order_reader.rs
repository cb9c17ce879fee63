//! Batched reads of orders by id on SQLite.
//!
//! sqlx runs each SQLite connection on a thread of its own, so every statement is a round trip
//! to that thread and back, and every read also takes a connection from the pool and returns
//! it. Under load most of a `GetOrder`'s database cost is that hand-off, not SQLite. Here the
//! reads of the process go to one reader task, which takes whatever is queued (up to
//! [`MAX_BATCH`]) and fetches it with one `SELECT … WHERE id IN (…)` on one pooled connection
//! per batch. A read still sees everything committed before it was queued (WAL readers see
//! the latest commit when their statement starts). Should a batch fail, or the task stop, its
//! callers read on their own, each with the pool's own timeout, in parallel.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use super::batch::{Batcher, Job};
use crate::db::entities::order;
use crate::error::OrderError;

/// The most reads fetched with one statement (well under SQLite's bound-parameter limit).
const MAX_BATCH: usize = 64;

/// The order or `NotFound`; `None`: the batch failed, read it on your own.
type Answer = Option<Result<order::Model, OrderError>>;

/// The handle callers read through ([`Batcher::submit`] with the order id). `None` from
/// `submit` (the task has stopped) or as the answer (the batch failed): read on your own.
pub(crate) type OrderReader = Batcher<String, Answer>;

pub(crate) fn start(db: DatabaseConnection) -> OrderReader {
    Batcher::start(
        MAX_BATCH,
        "the order reader has stopped; reading on its own",
        move |batch| read(db.clone(), batch),
    )
}

/// Reads one batch and answers each of its callers.
async fn read(db: DatabaseConnection, batch: Vec<Job<String, Answer>>) {
    crate::metrics::read_batch(batch.len());
    match fetch(&db, &batch).await {
        Ok(found) => {
            for job in batch {
                let answer = found
                    .get(&job.request)
                    .cloned()
                    .ok_or_else(|| OrderError::NotFound {
                        order_id: job.request.clone(),
                    });
                job.answer(Some(answer));
            }
        }
        Err(err) => {
            // Not retried here one by one: with the pool exhausted each retry could wait out
            // the pool's timeout in turn while every later read queues behind them.
            tracing::warn!(
                error = %err,
                reads = batch.len(),
                "batched order read failed; each caller reads its order on its own"
            );
            for job in batch {
                job.answer(None);
            }
        }
    }
}

/// The orders of the batch that exist, by id. The id list is padded to a power of two (by
/// repeating the last id), so a connection caches seven `IN (…)` statements, not 64.
async fn fetch(
    db: &DatabaseConnection,
    batch: &[Job<String, Answer>],
) -> Result<HashMap<String, order::Model>, OrderError> {
    let mut ids: Vec<&str> = batch.iter().map(|job| job.request.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    if let Some(&last) = ids.last() {
        ids.resize(ids.len().next_power_of_two(), last);
    }
    let orders = order::Entity::find()
        .filter(order::Column::Id.is_in(ids))
        .all(db)
        .await?;
    Ok(orders
        .into_iter()
        .map(|order| (order.id.clone(), order))
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::NewOrder;
    use crate::store::OrderStore;
    use crate::testing::{Backend, TestDatabase};
    use sea_orm::{ConnectionTrait, Database};

    /// Reads `ids` as one batch and returns each caller's answer.
    async fn one_batch(db: &DatabaseConnection, ids: &[&str]) -> Vec<Answer> {
        let mut batch = Vec::new();
        let mut answers = Vec::new();
        for id in ids {
            let (answer, answered) = tokio::sync::oneshot::channel();
            batch.push(Job {
                request: (*id).to_owned(),
                answer,
            });
            answers.push(answered);
        }
        read(db.clone(), batch).await;
        let mut out = Vec::new();
        for answered in answers {
            out.push(answered.await.unwrap());
        }
        out
    }

    async fn database_with(ids: &[&str]) -> anyhow::Result<(TestDatabase, DatabaseConnection)> {
        let database = TestDatabase::create(Backend::Sqlite).await?;
        let db = Database::connect(database.url()).await?;
        crate::db::schema::migrate(&db).await?;
        let store = OrderStore::new(db.clone());
        for (fen, id) in (100..).zip(ids) {
            store
                .create_order(&NewOrder::new(id, fen, 0, 0, "")?)
                .await?;
        }
        Ok((database, db))
    }

    /// One batch with known, unknown and repeated ids: each caller gets its own order, or
    /// NotFound for its own id.
    #[tokio::test]
    async fn each_read_in_a_batch_gets_its_own_answer() -> anyhow::Result<()> {
        let (_database, db) = database_with(&["a", "b", "c"]).await?;
        let answers = one_batch(&db, &["b", "nosuch", "a", "b", "c"]).await;
        let described: Vec<String> = answers
            .into_iter()
            .map(|answer| match answer.expect("the batch did not fail") {
                Ok(order) => format!("{}:{:?}", order.id, order.pay_money),
                Err(err) => err.to_string(),
            })
            .collect();
        assert_eq!(
            described,
            [
                "b:Some(101)",
                "order nosuch not found",
                "a:Some(100)",
                "b:Some(101)",
                "c:Some(102)"
            ]
        );
        Ok(())
    }

    /// When the batch's SELECT fails, every caller is told to read on its own (none is left
    /// waiting), and through the store a read then gets its own error.
    #[tokio::test]
    async fn a_failed_batch_sends_every_caller_to_read_on_its_own() -> anyhow::Result<()> {
        let (_database, db) = database_with(&["a"]).await?;
        db.execute_unprepared("ALTER TABLE tb_order RENAME TO tb_order_gone")
            .await?;
        let answers = one_batch(&db, &["a", "b"]).await;
        assert_eq!(answers.len(), 2);
        assert!(answers.iter().all(Option::is_none));

        let err = OrderStore::new(db).get_order("a").await.unwrap_err();
        assert!(
            matches!(&err, OrderError::Database(source) if source.to_string().contains("tb_order")),
            "{err:?}"
        );
        Ok(())
    }

    /// Batches of every size up to the largest, each with one unknown id: the padding of the
    /// id list neither loses an order nor invents one.
    #[tokio::test]
    async fn batches_of_every_size_find_exactly_their_orders() -> anyhow::Result<()> {
        let ids: Vec<String> = (0..MAX_BATCH).map(|i| format!("order{i:02}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let (_database, db) = database_with(&refs).await?;
        for size in 1..=MAX_BATCH {
            let mut asked = refs[..size - 1].to_vec();
            asked.push("nosuch");
            let answers = one_batch(&db, &asked).await;
            for (id, answer) in asked.iter().zip(answers) {
                match answer.expect("the batch did not fail") {
                    Ok(order) => assert_eq!(order.id, *id),
                    Err(err) => assert_eq!(
                        (*id, err.to_string()),
                        ("nosuch", "order nosuch not found".into())
                    ),
                }
            }
        }
        Ok(())
    }

    /// Through the store: many concurrent GetOrders on SQLite go through the reader and
    /// each finds its own order (the wiring; how they are batched is left to the task).
    #[tokio::test]
    async fn concurrent_reads_through_the_store_find_their_orders() -> anyhow::Result<()> {
        let ids: Vec<String> = (0..200).map(|i| format!("order{i}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let (_database, db) = database_with(&refs).await?;
        let store = OrderStore::new(db);
        assert!(store.order_reader.is_some());
        let reads = ids.iter().map(|id| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move { store.get_order(&id).await.map(|order| (id, order)) })
        });
        for read in futures::future::join_all(reads).await {
            let (id, order) = read??;
            assert_eq!(order.id, id);
        }
        Ok(())
    }
}
