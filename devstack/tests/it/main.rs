#![allow(clippy::unwrap_used)]
//! End-to-end tests: the real gateway → pay-svc → order-svc path over real sockets on free
//! ports, with the WeChat Pay simulator as WeChat. Each test runs its own stack over its own
//! fresh database; the core cases run on SQLite, PostgreSQL and MariaDB.

mod duplicates;
mod happy_path;
mod hostile;
mod outage;
mod rejections;
mod support;
