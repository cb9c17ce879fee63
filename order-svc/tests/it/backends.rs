//! `on_each_backend!(test, …)`: one `#[tokio::test]` per backend for each named
//! `async fn test(Backend) -> anyhow::Result<()>` of the calling module, as `sqlite::test`,
//! `postgres::test`, `mysql::test`.

macro_rules! on_each_backend {
    ($($test:ident),* $(,)?) => {
        on_each_backend!(@on sqlite, Sqlite, [$($test),*]);
        on_each_backend!(@on postgres, Postgres, [$($test),*]);
        on_each_backend!(@on mysql, Mysql, [$($test),*]);
    };
    (@on $module:ident, $backend:ident, [$($test:ident),*]) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() -> anyhow::Result<()> {
                    super::$test(order_svc::testing::Backend::$backend).await
                }
            )*
        }
    };
}
