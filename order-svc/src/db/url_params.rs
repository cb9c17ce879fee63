//! The query parameters of a `DATABASE_URL` that sqlx 0.9 reads, per engine. sqlx passes over
//! any other one — on PostgreSQL with a WARN that quotes its value, password or not; on MySQL
//! silently — so a misspelt `sslmode` would connect without the TLS it asked for. order-svc
//! refuses them at start instead, naming the parameter, never its value.

use anyhow::bail;
use sea_orm::DbBackend;

/// sqlx-postgres 0.9 `options/parse.rs`, plus `options[...]`.
const POSTGRES: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// sqlx-mysql 0.9 `options/parse.rs`.
const MYSQL: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslca",
    "ssl-ca",
    "charset",
    "collation",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "socket",
    "timezone",
    "time-zone",
];

/// Refuses a query parameter sqlx would not read. SQLite URLs are left to sqlx, which refuses
/// unknown parameters itself.
pub fn check_known(database_url: &str, backend: DbBackend) -> anyhow::Result<()> {
    let (engine, known) = match backend {
        DbBackend::Postgres => ("PostgreSQL", POSTGRES),
        DbBackend::MySql => ("MySQL", MYSQL),
        _ => return Ok(()),
    };
    // A password with an unencoded `?`, `/` or `#` puts its rest in the "query": nothing in
    // there may be quoted then. `redact` tells such a URL apart.
    let unreadable = || {
        anyhow::anyhow!(
            "DATABASE_URL cannot be read as a URL: percent-encode `?`, `/`, `@` and `#` in the \
             user name and password"
        )
    };
    if super::redact(database_url) == super::UNPARSEABLE {
        return Err(unreadable());
    }
    let url = url::Url::parse(database_url).map_err(|_| unreadable())?;
    for (name, _) in url.query_pairs() {
        let options_entry =
            backend == DbBackend::Postgres && name.starts_with("options[") && name.ends_with(']');
        if known.contains(&name.as_ref()) || options_entry {
            continue;
        }
        bail!(
            "DATABASE_URL has a parameter sqlx does not read, so it would have no effect: `{}` \
             (remove it; {engine} takes {})",
            paynotify::loggable(&name, 40),
            known.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str) -> Result<(), String> {
        let backend = crate::config::backend_of(url).map_err(|e| e.to_string())?;
        check_known(url, backend).map_err(|e| e.to_string())
    }

    #[test]
    fn parameters_sqlx_reads_pass() {
        for url in [
            "postgres://app:pw@db/orders",
            "postgres:///orders?host=/run/postgresql&user=app",
            "postgres://app:pw@db/orders?sslmode=verify-full&sslrootcert=/ca.pem",
            "postgres://app@db/orders?application_name=order-svc&options[statement_timeout]=5s",
            "mysql://app:pw@db/orders?ssl-mode=REQUIRED&charset=utf8mb4&time-zone=%2B08:00",
            "sqlite://data/orders.db?mode=rwc",
        ] {
            assert_eq!(check(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn a_misspelt_parameter_is_named_and_its_value_never_shown() {
        let refused =
            check("postgres://app@db/orders?sslmde=require&sslpassword=hunter2").unwrap_err();
        assert!(refused.contains("`sslmde`"), "{refused}");
        assert!(!refused.contains("require"), "{refused}");
        let refused = check("postgres://app@db/orders?sslpassword=hunter2").unwrap_err();
        assert!(refused.contains("`sslpassword`"), "{refused}");
        assert!(!refused.contains("hunter2"), "{refused}");
        let refused = check("mysql://app@db/orders?ssl_mode=REQUIRED").unwrap_err();
        assert!(refused.contains("`ssl_mode`"), "{refused}");
    }

    #[test]
    fn a_password_with_an_unencoded_question_mark_is_not_quoted() {
        for (url, part) in [
            ("postgres://app:se?cret@db/orders", "cret"),
            ("postgres://app:ab?cd&ef@db/orders", "cd"),
            ("postgres://app:x?Secret=1@db/orders", "Secret"),
            ("mysql://app:p#q?r=s@db/orders", "`r`"),
        ] {
            let refused = check(url).unwrap_err();
            assert!(!refused.contains(part), "{url}: {refused}");
            assert!(refused.contains("percent-encode"), "{url}: {refused}");
        }
    }
}
