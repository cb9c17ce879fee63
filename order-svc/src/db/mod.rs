//! The database: connecting with settings that keep payments safe, and making sure the schema
//! is there (migrating it, or only checking it) before the server says it is SERVING.

pub mod entities;
pub mod migration;
pub mod schema;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend};

use crate::config::{Config, SchemaMode};

/// How long a SQLite writer waits for the write lock before failing with "database is locked".
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A pooled connection idle this long is pinged before it is handed out.
const POOL_PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);

/// Opens the connection pool for `config.database_url`.
pub async fn connect(config: &Config) -> anyhow::Result<DatabaseConnection> {
    if config.backend() == DbBackend::Sqlite {
        create_sqlite_parent_dir(&config.database_url)?;
    }
    let mut options = ConnectOptions::new(config.database_url.clone());
    options
        .max_connections(config.max_connections)
        .min_connections(0)
        .acquire_timeout(config.acquire_timeout)
        .connect_timeout(config.acquire_timeout)
        // Statement logging would put payment details in the log at INFO; spans remain.
        .sqlx_logging(false)
        // Ping a pooled connection only when it has been idle for a while (a server or a
        // proxy may have closed it), not before every query: under load that ping was one
        // more round trip per statement.
        .test_before_acquire_if_idle_for(POOL_PING_IF_IDLE_FOR)
        .map_sqlx_sqlite_opts(|options| {
            options
                // Readers never block the writer, and the busy handler covers the rest.
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                // A reported MARKED_PAID must survive a power cut: fsync every commit.
                .synchronous(SqliteSynchronous::Full)
        });
    Database::connect(options)
        .await
        .with_context(|| format!("connecting to {}", redact(&config.database_url)))
}

/// Migrates or verifies the schema according to `mode`.
pub async fn prepare_schema(db: &DatabaseConnection, mode: SchemaMode) -> anyhow::Result<()> {
    match mode {
        SchemaMode::Migrate => schema::migrate(db).await,
        SchemaMode::VerifyOnly => schema::verify(db).await,
    }
}

/// `sqlite://data/orders.db?mode=rwc` may create the file but not its directory.
fn create_sqlite_parent_dir(database_url: &str) -> anyhow::Result<()> {
    let options = SqliteConnectOptions::from_str(database_url)
        .with_context(|| format!("DATABASE_URL {database_url:?} is not a SQLite URL"))?;
    let file = options.get_filename();
    let in_memory = file.to_string_lossy().starts_with("file:") || database_url.contains("memory");
    if let Some(dir) = file
        .parent()
        .filter(|dir| !in_memory && dir != &Path::new(""))
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the database directory {}", dir.display()))?;
    }
    Ok(())
}

/// The URL without its password, for messages.
pub fn redact(database_url: &str) -> String {
    let Some((scheme, rest)) = database_url.split_once("://") else {
        return database_url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return database_url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => database_url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/orders"),
            "postgres://app:***@db:5432/orders"
        );
        assert_eq!(
            redact("mysql://root@127.0.0.1:3306/x"),
            "mysql://root@127.0.0.1:3306/x"
        );
        assert_eq!(
            redact("sqlite://data/orders.db?mode=rwc"),
            "sqlite://data/orders.db?mode=rwc"
        );
    }

    #[tokio::test]
    async fn sqlite_connections_use_wal_full_sync_and_a_busy_timeout() -> anyhow::Result<()> {
        use sea_orm::{ConnectionTrait, Statement};
        let path =
            std::env::temp_dir().join(format!("order-svc-pragma-{}.db", crate::ids::next_id()));
        let config = Config::for_database(format!("sqlite://{}?mode=rwc", path.display()))?;
        let db = connect(&config).await?;
        let pragma = |name: &str| {
            let db = db.clone();
            let sql = format!("PRAGMA {name}");
            async move {
                let row = db
                    .query_one_raw(Statement::from_string(DbBackend::Sqlite, sql))
                    .await?;
                let value = match row {
                    Some(row) => row
                        .try_get_by_index::<String>(0)
                        .or_else(|_| row.try_get_by_index::<i64>(0).map(|v| v.to_string()))?,
                    None => String::new(),
                };
                anyhow::Ok(value)
            }
        };
        assert_eq!(pragma("journal_mode").await?, "wal");
        assert_eq!(pragma("synchronous").await?, "2", "2 is FULL");
        assert_eq!(pragma("busy_timeout").await?, "10000");
        db.close().await?;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        Ok(())
    }

    #[test]
    fn sqlite_directory_is_created() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("order-svc-dir-{}", crate::ids::next_id()));
        let url = format!("sqlite://{}/nested/orders.db?mode=rwc", dir.display());
        create_sqlite_parent_dir(&url)?;
        assert!(dir.join("nested").is_dir());
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }
}
