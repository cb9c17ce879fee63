//! order-svc integration tests: each test starts a real order-svc on 127.0.0.1:0 over a fresh
//! database and talks to it over gRPC. The behaviour suite runs unchanged on SQLite,
//! PostgreSQL and MariaDB (see `order_svc::testing` for where the servers are expected).

#[macro_use]
mod backends;
mod auth;
mod behaviour;
mod lifecycle;
mod limits;
mod long_ids;
mod multi_server;
mod original_schema;
mod pki;
mod startup;
mod tls;
mod transaction_reused;
mod unexpected_state;

use anyhow::Context;
use order_svc::db::entities::{order, pay_anomaly};
use order_svc::testing::{Backend, TestDatabase, TestServer};
use paynotify::proto::order::v1 as pb;
use pb::order_service_client::OrderServiceClient;
use sea_orm::{ColumnTrait, Database, DatabaseConnection, EntityTrait, QueryFilter};
use tonic::transport::Channel;

/// A running order-svc on its own database, a client, and a direct connection for checks
/// that the API cannot make (anomaly rows, back-dating orders).
pub struct Harness {
    pub client: OrderServiceClient<Channel>,
    pub db: DatabaseConnection,
    pub server: TestServer,
    // Dropped last: the database outlives the server using it.
    pub database: TestDatabase,
}

impl Harness {
    pub async fn start(backend: Backend) -> anyhow::Result<Self> {
        let database = TestDatabase::create(backend).await?;
        let server = TestServer::start(database.url()).await?;
        let client = server.client().await?;
        let db = Database::connect(database.url()).await?;
        Ok(Harness {
            client,
            db,
            server,
            database,
        })
    }

    pub async fn create_order(&self, pay_money: i64) -> anyhow::Result<pb::Order> {
        let response = self
            .client
            .clone()
            .create_order(pb::CreateOrderRequest {
                pay_money,
                ..Default::default()
            })
            .await?;
        response.into_inner().order.context("no order in response")
    }

    pub async fn get_order(&self, id: &str) -> anyhow::Result<pb::Order> {
        let response = self
            .client
            .clone()
            .get_order(pb::GetOrderRequest { id: id.into() })
            .await?;
        response.into_inner().order.context("no order in response")
    }

    pub async fn mark_paid(
        &self,
        order_id: &str,
        transaction_id: &str,
        amount_fen: i64,
    ) -> Result<pb::MarkPaidResponse, tonic::Status> {
        mark_paid(&self.client, order_id, transaction_id, amount_fen).await
    }

    pub async fn logs(&self, order_id: &str) -> anyhow::Result<Vec<pb::OrderLog>> {
        let response = self
            .client
            .clone()
            .list_order_logs(pb::ListOrderLogsRequest {
                order_id: order_id.into(),
            })
            .await?;
        Ok(response.into_inner().logs)
    }

    pub async fn anomalies(&self, order_id: &str) -> anyhow::Result<Vec<pay_anomaly::Model>> {
        anomalies(&self.db, order_id).await
    }

    /// Moves an order's creation back in time, as if it had waited that long.
    pub async fn age_order(&self, order_id: &str, seconds: i64) -> anyhow::Result<()> {
        let order = order::Entity::find_by_id(order_id)
            .one(&self.db)
            .await?
            .context("no such order")?;
        let created = order.create_time.context("no create_time")?;
        let mut row: order::ActiveModel = order.into();
        row.create_time =
            sea_orm::ActiveValue::Set(Some(created - chrono::Duration::seconds(seconds)));
        sea_orm::ActiveModelTrait::update(row, &self.db).await?;
        Ok(())
    }
}

/// WeChat's `time_end` used throughout: 2024-05-01 08:09:10 in Beijing.
pub const TIME_END: &str = "20240501080910";
/// The same instant in UTC, as the API reports it.
pub const PAY_TIME_UTC: &str = "2024-05-01T00:09:10Z";

pub async fn mark_paid(
    client: &OrderServiceClient<Channel>,
    order_id: &str,
    transaction_id: &str,
    amount_fen: i64,
) -> Result<pb::MarkPaidResponse, tonic::Status> {
    client
        .clone()
        .mark_paid(pb::MarkPaidRequest {
            order_id: order_id.into(),
            transaction_id: transaction_id.into(),
            amount_fen,
            time_end: TIME_END.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

pub async fn anomalies(
    db: &DatabaseConnection,
    order_id: &str,
) -> anyhow::Result<Vec<pay_anomaly::Model>> {
    Ok(pay_anomaly::Entity::find()
        .filter(pay_anomaly::Column::OrderId.eq(order_id))
        .all(db)
        .await?)
}

pub fn outcome(response: &pb::MarkPaidResponse) -> pb::MarkPaidOutcome {
    pb::MarkPaidOutcome::try_from(response.outcome).unwrap_or_default()
}

/// A WeChat-like 28-digit transaction id, distinct per `n`.
pub fn transaction_id(n: u32) -> String {
    format!("42000021{n:020}")
}

/// One `#[tokio::test]` per (backend, behaviour): `sqlite::happy_path`, `postgres::…`, ….
macro_rules! on_backend {
    ($module:ident, $backend:expr, [$($test:ident),* $(,)?]) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() -> anyhow::Result<()> {
                    crate::behaviour::$test($backend).await
                }
            )*
        }
    };
}

macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        on_backend!(sqlite, order_svc::testing::Backend::Sqlite, [$($test),*]);
        on_backend!(postgres, order_svc::testing::Backend::Postgres, [$($test),*]);
        on_backend!(mysql, order_svc::testing::Backend::Mysql, [$($test),*]);
    };
}

on_every_backend!(
    happy_path_marks_paid_once_with_pay_time_in_utc,
    same_transaction_again_is_already_paid_and_writes_nothing,
    concurrent_calls_with_one_transaction_pay_once,
    mixed_concurrent_payments_each_get_their_own_answer,
    two_transactions_race_one_wins_other_conflicts_once,
    repeated_conflict_is_recorded_once,
    amount_mismatch_changes_nothing,
    unknown_order_is_not_found,
    malformed_arguments_are_invalid,
    payment_of_a_closed_order_conflicts,
    close_order_is_idempotent_and_never_closes_paid_orders,
    pending_orders_are_filtered_by_age_oldest_first,
    pending_orders_are_walked_a_page_at_a_time,
    create_order_ids_and_defaults,
    transaction_paying_two_orders_is_refused,
    health_reports_serving,
    two_servers_on_one_database_pay_exactly_once,
);
