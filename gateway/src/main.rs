//! The gateway binary: settings (defaults → `--config` TOML → environment → flags), checked
//! before anything starts, then telemetry, then serving until Ctrl-C/SIGTERM.

/// jemalloc rather than glibc's malloc: the many small, short-lived allocations of every
/// request (headers, fields, protobuf maps) cost markedly less CPU (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: gateway::Config = paynotify::config::load();
    let config = match config
        .resolve_secrets()
        .and_then(|c| c.validate().map(|()| c))
    {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(2);
        }
    };
    paynotify::runtime::init_telemetry(config.log_format);
    let server = gateway::bind(config).await?;
    server
        .run_until(paynotify::runtime::shutdown_signal())
        .await
}
