//! Configuration: command-line flags and their environment variables, checked once at start
//! and turned into a typed [`Config`] (defaults → environment → flags).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use paynotify::metrics::AdminAddr;
use paynotify::runtime::LogFormat;
use sea_orm::DbBackend;
use secrecy::SecretString;
use tonic::transport::ServerTlsConfig;

/// The default database: a SQLite file next to the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/orders.db?mode=rwc";

/// Command-line flags; every one can also come from the environment variable it names.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "order-svc", version, about = "gRPC order.v1.OrderService")]
pub struct Args {
    /// Address the gRPC server listens on.
    #[arg(long, env = "ORDER_SVC_ADDR", default_value = "127.0.0.1:50052")]
    pub addr: SocketAddr,

    /// sqlite://, postgres:// or mysql:// URL of the order database.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = DEFAULT_DATABASE_URL
    )]
    pub database_url: DatabaseUrl,

    /// Pool size; defaults to 4 for SQLite (one writer at a time anyway) and 10 otherwise.
    #[arg(long, env = "DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,

    /// How long a request waits for a pooled connection before failing as UNAVAILABLE.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT_MS", default_value_t = 5_000)]
    pub db_acquire_timeout_ms: u64,

    /// `true`: apply migrations at start. `false`: only check that the tables and columns
    /// exist (for a database whose schema is managed elsewhere, e.g. the original MySQL one).
    #[arg(long, env = "DB_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub db_migrate: bool,

    /// On shutdown, how long in-flight calls and open streams (e.g. health watchers) may
    /// take before their connections are dropped.
    #[arg(long, env = "SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,

    /// Bearer token every OrderService call must carry (health and reflection stay open).
    #[arg(long, env = "GRPC_AUTH_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub grpc_auth_token: Option<SecretString>,

    /// Read GRPC_AUTH_TOKEN from this file instead.
    #[arg(long, env = "GRPC_AUTH_TOKEN_FILE")]
    pub grpc_auth_token_file: Option<PathBuf>,

    /// Run without a token: every caller is trusted. Only on a trusted network.
    #[arg(long, env = "GRPC_ALLOW_UNAUTHENTICATED", default_value_t = false, action = clap::ArgAction::Set)]
    pub grpc_allow_unauthenticated: bool,

    /// Serve gRPC over TLS with this certificate chain (PEM, leaf first); needs
    /// GRPC_TLS_KEY_FILE. Neither set: plaintext. Callers still need the token.
    #[arg(long, env = "GRPC_TLS_CERT_FILE")]
    pub grpc_tls_cert_file: Option<PathBuf>,

    /// The private key (PEM) of GRPC_TLS_CERT_FILE's certificate.
    #[arg(long, env = "GRPC_TLS_KEY_FILE")]
    pub grpc_tls_key_file: Option<PathBuf>,

    /// Admin HTTP address serving GET /metrics (Prometheus) and GET /healthz; `off` (or
    /// empty) disables it.
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9102")]
    pub metrics_addr: AdminAddr,

    /// Optional TOML file with any of these settings (flags and environment win over it).
    #[arg(long, env = "CONFIG_FILE")]
    pub config: Option<PathBuf>,

    /// Log line format: `text` for people, `json` for a log pipeline.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

fn parse_secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}

/// The database URL, which may carry the database password: `Debug` and `Display` show it
/// without ([`crate::db::redact`]), so a config printed whole or a log line that names the
/// database never holds the password. [`DatabaseUrl::expose`] gives the URL itself, to connect.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL as configured, password included.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        DatabaseUrl(url)
    }
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> Self {
        DatabaseUrl(url.to_owned())
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::db::redact(&self.0))
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&crate::db::redact(&self.0), f)
    }
}

/// What to do with the schema at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaMode {
    /// Create missing tables, columns and indexes.
    Migrate,
    /// Touch nothing; fail at start naming any missing table or column.
    VerifyOnly,
}

/// Everything order-svc needs to start, already validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    pub database_url: DatabaseUrl,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub schema: SchemaMode,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    /// `None`: no authentication (tests, or GRPC_ALLOW_UNAUTHENTICATED).
    pub grpc_auth_token: Option<SecretString>,
    /// Where GET /metrics is served; off for tests unless they ask.
    pub metrics_addr: AdminAddr,
    /// `None`: plaintext gRPC. Built by [`paynotify::tls::server_config`].
    pub grpc_tls: Option<ServerTlsConfig>,
}

impl Config {
    /// From the process's command line and environment; fails naming the bad key.
    pub fn load() -> anyhow::Result<Self> {
        Self::try_from(paynotify::config::load::<Args>())
    }

    /// The defaults for `database_url`, listening on an ephemeral localhost port and with a
    /// short shutdown grace: what tests and devstack want.
    pub fn for_database(database_url: impl Into<String>) -> anyhow::Result<Self> {
        let database_url = DatabaseUrl(database_url.into());
        let backend = backend_of(database_url.expose())?;
        Ok(Config {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_connections: default_max_connections(backend),
            database_url,
            acquire_timeout: Duration::from_secs(5),
            schema: SchemaMode::Migrate,
            shutdown_grace: Duration::from_secs(2),
            log_format: LogFormat::Text,
            grpc_auth_token: None,
            metrics_addr: AdminAddr::OFF,
            grpc_tls: None,
        })
    }

    /// Which database engine `database_url` names.
    pub fn backend(&self) -> DbBackend {
        // Validated when the Config was built; SQLite only as a harmless fallback.
        backend_of(self.database_url.expose()).unwrap_or(DbBackend::Sqlite)
    }
}

impl TryFrom<Args> for Config {
    type Error = anyhow::Error;

    fn try_from(args: Args) -> anyhow::Result<Self> {
        let backend = backend_of(args.database_url.expose())?;
        crate::db::url_params::check_known(args.database_url.expose(), backend)?;
        let max_connections = args
            .db_max_connections
            .unwrap_or_else(|| default_max_connections(backend));
        if max_connections == 0 {
            bail!("DB_MAX_CONNECTIONS must be at least 1");
        }
        if args.db_acquire_timeout_ms == 0 {
            bail!("DB_ACQUIRE_TIMEOUT_MS must be at least 1 (milliseconds)");
        }
        Ok(Config {
            listen_addr: args.addr,
            database_url: args.database_url,
            max_connections,
            acquire_timeout: Duration::from_millis(args.db_acquire_timeout_ms),
            schema: if args.db_migrate {
                SchemaMode::Migrate
            } else {
                SchemaMode::VerifyOnly
            },
            shutdown_grace: Duration::from_millis(args.shutdown_grace_ms),
            log_format: args.log_format,
            metrics_addr: args.metrics_addr,
            grpc_auth_token: paynotify::auth::resolve_token(
                args.grpc_auth_token.as_ref(),
                args.grpc_auth_token_file.as_ref(),
                args.grpc_allow_unauthenticated,
            )?,
            grpc_tls: paynotify::tls::server_config(
                args.grpc_tls_cert_file.as_deref(),
                args.grpc_tls_key_file.as_deref(),
            )?,
        })
    }
}

/// The engine a database URL names, by its scheme.
pub fn backend_of(database_url: &str) -> anyhow::Result<DbBackend> {
    let scheme = database_url
        .split_once(':')
        .map(|(scheme, _)| scheme)
        .context("DATABASE_URL must be a URL such as sqlite://data/orders.db?mode=rwc")?;
    match scheme {
        "sqlite" => Ok(DbBackend::Sqlite),
        "postgres" | "postgresql" => Ok(DbBackend::Postgres),
        "mysql" | "mariadb" => Ok(DbBackend::MySql),
        other => bail!("DATABASE_URL has scheme {other:?}; expected sqlite, postgres or mysql"),
    }
}

fn default_max_connections(backend: DbBackend) -> u32 {
    match backend {
        // SQLite has a single writer; more connections only queue on its lock.
        DbBackend::Sqlite => 4,
        _ => 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> anyhow::Result<Config> {
        let mut argv = vec![
            "order-svc",
            "--grpc-auth-token",
            "order-svc-test-token-0123",
        ];
        argv.extend_from_slice(args);
        Config::try_from(Args::try_parse_from(argv)?)
    }

    #[test]
    fn defaults_use_sqlite_with_a_small_pool() -> anyhow::Result<()> {
        let config = parse(&["--database-url", DEFAULT_DATABASE_URL])?;
        assert_eq!(config.backend(), DbBackend::Sqlite);
        assert_eq!(config.max_connections, 4);
        assert_eq!(config.schema, SchemaMode::Migrate);
        assert_eq!(config.acquire_timeout, Duration::from_secs(5));
        Ok(())
    }

    #[test]
    fn postgres_gets_a_larger_pool_and_flags_override() -> anyhow::Result<()> {
        let config = parse(&[
            "--database-url",
            "postgres://postgres@127.0.0.1/orders",
            "--db-migrate",
            "false",
        ])?;
        assert_eq!(config.backend(), DbBackend::Postgres);
        assert_eq!(config.max_connections, 10);
        assert_eq!(config.schema, SchemaMode::VerifyOnly);
        let config = parse(&[
            "--database-url",
            "mysql://root@127.0.0.1/orders",
            "--db-max-connections",
            "3",
        ])?;
        assert_eq!(config.backend(), DbBackend::MySql);
        assert_eq!(config.max_connections, 3);
        Ok(())
    }

    #[test]
    fn debug_shows_the_database_without_its_password() -> anyhow::Result<()> {
        let url = "postgres://orders:pg-s3cret@db.internal:5432/orders?password=pg-s3cret";
        let args = Args::try_parse_from([
            "order-svc",
            "--grpc-auth-token",
            "order-svc-test-token-0123",
            "--database-url",
            url,
        ])?;
        let config = Config::try_from(args.clone())?;
        assert_eq!(config.database_url.expose(), url);
        for debug in [format!("{args:?}"), format!("{config:?}")] {
            assert!(!debug.contains("pg-s3cret"), "{debug}");
            assert!(!debug.contains("order-svc-test-token"), "{debug}");
            assert!(debug.contains("db.internal:5432/orders"), "{debug}");
        }
        Ok(())
    }

    #[test]
    fn unknown_scheme_names_the_key() {
        let err = parse(&["--database-url", "oracle://x"]).err();
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("DATABASE_URL"), "{message}");
    }
}
