//! Test support, for this crate's tests and other crates' (pay-svc, gateway, end-to-end):
//! a fresh, uniquely named database per test on SQLite, PostgreSQL or MariaDB/MySQL, and an
//! in-process order-svc on port 0.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use order_svc::testing::{Backend, TestDatabase, TestServer};
//! let db = TestDatabase::create(Backend::Sqlite).await?;
//! let server = TestServer::start(db.url()).await?;
//! let client = server.client().await?;
//! // ... call `client`, then stop (or just drop both: that shuts down and cleans up).
//! # drop(client);
//! server.stop().await?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use paynotify::proto::order::v1::order_service_client::OrderServiceClient;
use sea_orm::{ConnectOptions, ConnectionTrait, Database};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::config::Config;
use crate::ids;

/// PostgreSQL server used for test databases; trust authentication expected.
pub const DEFAULT_POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// MariaDB/MySQL server used for test databases.
pub const DEFAULT_MYSQL_ADMIN_URL: &str = "mysql://root@127.0.0.1:3306";

/// Which database engine a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Sqlite, Backend::Postgres, Backend::Mysql];

    /// The server to create databases on: `TEST_POSTGRES_URL` / `TEST_MYSQL_URL` or the
    /// local default. `None` for SQLite, which needs no server.
    pub fn admin_url(self) -> Option<String> {
        let (var, default) = match self {
            Backend::Sqlite => return None,
            Backend::Postgres => ("TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL),
            Backend::Mysql => ("TEST_MYSQL_URL", DEFAULT_MYSQL_ADMIN_URL),
        };
        Some(std::env::var(var).unwrap_or_else(|_| default.to_owned()))
    }
}

/// A fresh, empty database that is dropped (best effort) when this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    backend: Backend,
    url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    SqliteFile(PathBuf),
    DropDatabase { admin_url: String, name: String },
    Done,
}

impl TestDatabase {
    /// Creates a new database named `t_<snowflake>` (SQLite: a temporary file).
    pub async fn create(backend: Backend) -> anyhow::Result<Self> {
        let name = format!("t_{}", ids::next_id());
        let Some(admin_url) = backend.admin_url() else {
            let path = std::env::temp_dir().join(format!("order-svc-{name}.db"));
            return Ok(TestDatabase {
                backend,
                url: format!("sqlite://{}?mode=rwc", path.display()),
                cleanup: Cleanup::SqliteFile(path),
            });
        };
        let create = match backend {
            Backend::Mysql => format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"),
            _ => format!("CREATE DATABASE \"{name}\""),
        };
        run_admin(&admin_url, &[create.as_str()])
            .await
            .with_context(|| {
                format!(
                    "creating test database {name} on {} (is the server running?)",
                    crate::db::redact(&admin_url)
                )
            })?;
        Ok(TestDatabase {
            backend,
            url: with_database(&admin_url, &name),
            cleanup: Cleanup::DropDatabase { admin_url, name },
        })
    }

    /// The `DATABASE_URL` of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Keeps the database after the test, e.g. to look at it by hand.
    pub fn keep(mut self) -> String {
        self.cleanup = Cleanup::Done;
        std::mem::take(&mut self.url)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.cleanup, Cleanup::Done) {
            Cleanup::SqliteFile(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Cleanup::DropDatabase { admin_url, name } => drop_database(admin_url, name),
            Cleanup::Done => {}
        }
    }
}

/// Drops a server database from a helper thread (Drop cannot await, and may run inside a
/// runtime), waiting a few seconds at most so a slow server cannot hang the test.
fn drop_database(admin_url: String, name: String) {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let statements: Vec<String> = if admin_url.starts_with("mysql") {
            vec![
                // Give up rather than wait for a connection the test left in a transaction.
                "SET SESSION lock_wait_timeout = 5".to_owned(),
                format!("DROP DATABASE IF EXISTS `{name}`"),
            ]
        } else {
            // FORCE: the server under test may still hold pooled connections.
            vec![format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")]
        };
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| {
                let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
                runtime.block_on(run_admin(&admin_url, &statements))
            });
        if let Err(err) = result {
            eprintln!("order-svc testing: could not drop test database {name}: {err:#}");
        }
        let _ = done_tx.send(());
    });
    let _ = done_rx.recv_timeout(Duration::from_secs(10));
}

async fn run_admin(admin_url: &str, statements: &[&str]) -> anyhow::Result<()> {
    let mut options = ConnectOptions::new(admin_url.to_owned());
    options
        .max_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    let admin = Database::connect(options).await?;
    for statement in statements {
        admin.execute_unprepared(statement).await?;
    }
    admin.close().await?;
    Ok(())
}

/// `admin_url` with its database (path) replaced by `name`, keeping any query string.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut url = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// An order-svc running inside the test process, on 127.0.0.1 and an ephemeral port.
/// Dropping it starts a graceful shutdown; [`TestServer::stop`] also waits for it.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    tls: bool,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts order-svc on `database_url`, migrating it.
    pub async fn start(database_url: &str) -> anyhow::Result<Self> {
        Self::start_with(Config::for_database(database_url)?).await
    }

    /// Starts order-svc with a config of the caller's making (e.g. `SchemaMode::VerifyOnly`).
    pub async fn start_with(config: Config) -> anyhow::Result<Self> {
        let tls = config.grpc_tls.is_some();
        let server = crate::bind(config).await?;
        let addr = server.local_addr();
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until(async {
            let _ = shutdown_rx.await;
        }));
        Ok(TestServer {
            addr,
            tls,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, for `Channel`s and other services' config; with TLS
    /// (`Config::grpc_tls`) `https://localhost:<port>`, the name a test certificate carries.
    pub fn endpoint(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// A connected client.
    pub async fn client(&self) -> anyhow::Result<OrderServiceClient<Channel>> {
        Ok(OrderServiceClient::connect(self.endpoint()).await?)
    }

    /// Shuts down gracefully and returns how serving ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.task.take() {
            Some(task) => task.await.context("order-svc task panicked")?,
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_replaces_the_path() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t_1"),
            "postgres://postgres@127.0.0.1:5432/t_1"
        );
        assert_eq!(
            with_database("mysql://root@127.0.0.1:3306", "t_1"),
            "mysql://root@127.0.0.1:3306/t_1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "t_2"),
            "postgres://u:p@h/t_2?sslmode=disable"
        );
    }
}
