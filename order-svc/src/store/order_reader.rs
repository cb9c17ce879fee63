//! Batched reads of orders by id on SQLite.
//!
//! sqlx runs each SQLite connection on a thread of its own, so every statement is a round trip
//! to that thread and back, and every read also takes a connection from the pool and returns
//! it. Under load most of a `GetOrder`'s database cost is that hand-off, not SQLite. Here the
//! reads of the process go to one reader task, which takes whatever is queued (up to
//! [`MAX_BATCH`]) and fetches them with one `SELECT … WHERE id IN (…)` on one connection.
//! A read still sees everything committed before it was queued (WAL readers see the latest
//! commit when their statement starts). Should the batch fail, each read runs alone, so every
//! caller gets its own answer; should the task ever stop, callers read on their own.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use tokio::sync::{mpsc, oneshot};

use super::read::find_order;
use crate::db::entities::order;
use crate::error::OrderError;

/// The most reads fetched with one statement (well under SQLite's bound-parameter limit).
const MAX_BATCH: usize = 64;
/// Reads waiting for the reader; a caller beyond this waits to be queued.
const QUEUE: usize = 1024;

type Answer = Result<order::Model, OrderError>;

struct Job {
    order_id: String,
    answer: oneshot::Sender<Answer>,
}

/// The handle callers read through; the task stops when the last handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct OrderReader {
    jobs: mpsc::Sender<Job>,
}

impl OrderReader {
    pub(crate) fn start(db: DatabaseConnection) -> OrderReader {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, queue));
        OrderReader { jobs }
    }

    /// The order, `NotFound`, or a database error. `None`: the reader task has stopped (it
    /// panicked), and the caller must read on its own.
    pub(crate) async fn read(&self, order_id: &str) -> Option<Answer> {
        let (answer, answered) = oneshot::channel();
        let job = Job {
            order_id: order_id.to_owned(),
            answer,
        };
        let answer = match self.jobs.send(job).await {
            Ok(()) => answered.await.ok(),
            Err(_) => None,
        };
        if answer.is_none() {
            tracing::error!("the order reader has stopped; reading on its own");
        }
        answer
    }
}

async fn run(db: DatabaseConnection, mut queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        crate::metrics::read_batch(batch.len());
        match fetch(&db, &batch).await {
            Ok(mut found) => {
                for job in batch.drain(..) {
                    let answer =
                        found
                            .get(&job.order_id)
                            .cloned()
                            .ok_or_else(|| OrderError::NotFound {
                                order_id: job.order_id.clone(),
                            });
                    // The caller may have gone (its request was cancelled); nothing to undo.
                    let _ = job.answer.send(answer);
                }
                found.clear();
            }
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    reads = batch.len(),
                    "batched order read failed; reading its orders one by one"
                );
                for job in batch.drain(..) {
                    let answer = find_order(&db, &job.order_id).await;
                    let _ = job.answer.send(answer);
                }
            }
        }
    }
}

/// The orders of the batch that exist, by id (an id asked twice is fetched once).
async fn fetch(
    db: &DatabaseConnection,
    batch: &[Job],
) -> Result<HashMap<String, order::Model>, OrderError> {
    let mut ids: Vec<&str> = batch.iter().map(|job| job.order_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
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

    /// Queues every read before the task starts, so they all land in one batch, then lets the
    /// task run until the queue is closed.
    async fn one_batch(db: &DatabaseConnection, ids: &[&str]) -> Vec<Answer> {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let mut answers = Vec::new();
        for id in ids {
            let (answer, answered) = oneshot::channel();
            jobs.send(Job {
                order_id: (*id).to_owned(),
                answer,
            })
            .await
            .unwrap();
            answers.push(answered);
        }
        drop(jobs);
        run(db.clone(), queue).await;
        let mut out = Vec::new();
        for answered in answers {
            out.push(answered.await.unwrap());
        }
        out
    }

    async fn store_with(ids: &[&str]) -> anyhow::Result<(TestDatabase, DatabaseConnection)> {
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
        let (_database, db) = store_with(&["a", "b", "c"]).await?;
        let answers = one_batch(&db, &["b", "nosuch", "a", "b", "c"]).await;
        let described: Vec<String> = answers
            .iter()
            .map(|answer| match answer {
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

    /// When the batch's SELECT fails, every caller still gets an answer (its own read's
    /// error), none is left waiting.
    #[tokio::test]
    async fn a_failed_batch_answers_every_read() -> anyhow::Result<()> {
        let (_database, db) = store_with(&["a"]).await?;
        db.execute_unprepared("ALTER TABLE tb_order RENAME TO tb_order_gone")
            .await?;
        let answers = one_batch(&db, &["a", "b"]).await;
        assert_eq!(answers.len(), 2);
        for answer in answers {
            let err = answer.unwrap_err();
            assert!(
                matches!(&err, OrderError::Database(source) if source.to_string().contains("tb_order")),
                "{err:?}"
            );
        }
        Ok(())
    }

    /// Through the store: many concurrent GetOrders on SQLite go through the reader and
    /// each finds its own order.
    #[tokio::test]
    async fn concurrent_reads_through_the_store_find_their_orders() -> anyhow::Result<()> {
        let ids: Vec<String> = (0..200).map(|i| format!("order{i}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let (_database, db) = store_with(&refs).await?;
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
