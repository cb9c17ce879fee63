//! The database: connecting with settings that keep payments safe, and making sure the schema
//! is there (migrating it, or only checking it) before the server says it is SERVING.

pub mod entities;
pub mod migration;
pub mod schema;
pub mod url_params;

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
        create_sqlite_parent_dir(config.database_url.expose())?;
    }
    let mut options = ConnectOptions::new(config.database_url.expose());
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
        .with_context(|| format!("connecting to {}", config.database_url))
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
        .with_context(|| format!("DATABASE_URL {} is not a SQLite URL", redact(database_url)))?;
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

/// What [`redact`] shows of a URL it cannot take apart safely.
pub const UNPARSEABLE: &str = "<unparseable DATABASE_URL>";

/// The URL without its password, for messages: the password of `user:password@` and the value
/// of any query parameter whose name suggests a secret (`password`, libpq's `sslpassword`,
/// ...) become `***`; everything else is shown as it is configured. A URL that does not parse
/// cleanly is shown as [`UNPARSEABLE`]: a password holding an unencoded `/`, `?` or `#` ends
/// the host early, and then no part of the text can be known to be free of it.
pub fn redact(database_url: &str) -> String {
    // sqlx reads a SQLite URL as a path and a query, not as a URL with a host, and it carries
    // no password: shown as it is, but for a query parameter named like a secret.
    if database_url.starts_with("sqlite:") {
        return match database_url.split_once('?') {
            Some((path, query)) => format!("{path}?{}", redact_query(query)),
            None => database_url.to_owned(),
        };
    }
    let Ok(mut url) = url::Url::parse(database_url) else {
        return UNPARSEABLE.to_owned();
    };
    if url.cannot_be_a_base() {
        // `postgres:whatever`: no `//host`, so no telling what the rest is.
        return UNPARSEABLE.to_owned();
    }
    // Where the text after the host holds an `@`, or anything follows a `#`, a password with
    // an unencoded `/`, `?` or `#` was cut short and its rest is in there
    // (`postgres://app:12/x@db/orders` parses as host `app`, port 12, path `/x@db/orders`).
    let after_host = [Some(url.path()), url.query()];
    if url.fragment().is_some() || after_host.iter().flatten().any(|part| part.contains('@')) {
        return UNPARSEABLE.to_owned();
    }
    if url.password().is_some() && url.set_password(Some("***")).is_err() {
        return UNPARSEABLE.to_owned();
    }
    if let Some(query) = url.query().map(redact_query) {
        url.set_query(Some(&query));
    }
    url.into()
}

/// `query` (`a=1&password=x`) with the value of every parameter named like a secret replaced
/// by `***`; the rest as it is.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = url::form_urlencoded::parse(name.as_bytes())
                .next()
                .map(|(name, _)| name.to_ascii_lowercase())
                .unwrap_or_default();
            let secret = ["pass", "pwd", "secret", "token", "credential"]
                .iter()
                .any(|word| decoded.contains(word));
            if secret && !value.is_empty() {
                format!("{name}=***")
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_only_the_password() {
        for (url, shown) in [
            (
                "postgres://app:s3cret@db:5432/orders",
                "postgres://app:***@db:5432/orders",
            ),
            (
                "postgresql://app:s3cr%2Fet@db/orders?sslmode=require",
                "postgresql://app:***@db/orders?sslmode=require",
            ),
            // An unencoded `@` in the password: the last one ends the user information.
            (
                "postgres://app:s3c@ret@db/orders",
                "postgres://app:***@db/orders",
            ),
            (
                "mysql://root@127.0.0.1:3306/x",
                "mysql://root@127.0.0.1:3306/x",
            ),
            (
                "mysql://root:s3cret@127.0.0.1:3306/x?ssl-mode=REQUIRED&timezone=%2B08:00",
                "mysql://root:***@127.0.0.1:3306/x?ssl-mode=REQUIRED&timezone=%2B08:00",
            ),
            (
                "postgres:///orders?host=/run/pg",
                "postgres:///orders?host=/run/pg",
            ),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    #[test]
    fn redact_hides_passwords_in_the_query() {
        for (url, shown) in [
            (
                "postgres://app@db/orders?password=s3cret&sslmode=require",
                "postgres://app@db/orders?password=***&sslmode=require",
            ),
            (
                "postgres://db/orders?user=app&PassWord=s3cret",
                "postgres://db/orders?user=app&PassWord=***",
            ),
            (
                "postgres://db/orders?sslmode=verify-full&sslpassword=s3cret",
                "postgres://db/orders?sslmode=verify-full&sslpassword=***",
            ),
            // A name percent-encoded still counts by what it decodes to.
            (
                "postgres://db/orders?pass%77ord=s3cret",
                "postgres://db/orders?pass%77ord=***",
            ),
            (
                "mysql://app:s3cret@db/orders?pwd=s3cret&auth_token=s3cret",
                "mysql://app:***@db/orders?pwd=***&auth_token=***",
            ),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    #[test]
    fn a_password_that_breaks_the_url_is_never_shown() {
        for url in [
            // `/` ends the host: `app:s3` is a host with a port that is not a number.
            "postgres://app:s3/cret@db:5432/orders",
            // ... or one that is, and the rest lands in the path.
            "postgres://app:12/s3cret@db:5432/orders",
            "mysql://app:12?s3cret@db/orders",
            "postgres://app:12#s3cret@db/orders",
            "postgres://app#s3cret:x@db/orders",
            "postgres:s3cret",
            "s3cret",
            "",
        ] {
            assert_eq!(redact(url), UNPARSEABLE, "{url}");
        }
    }

    #[test]
    fn sqlite_urls_are_shown_as_they_are() {
        for url in [
            "sqlite://data/orders.db?mode=rwc",
            "sqlite://./data/../orders.db?mode=rwc",
            "sqlite:///var/lib/paynotify/orders.db",
            "sqlite::memory:",
            "sqlite://orders@home.db",
        ] {
            assert_eq!(redact(url), url);
        }
        assert_eq!(
            redact("sqlite://orders.db?mode=rwc&password=s3cret"),
            "sqlite://orders.db?mode=rwc&password=***"
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
