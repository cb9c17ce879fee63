//! What every service binary and in-process server shares: telemetry set-up, the shutdown
//! signal, and the standard gRPC extras (reflection for grpcurl, health for probes), held to
//! [`crate::grpc_server::MAX_DECODING_MESSAGE_SIZE`] like the services beside them.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::grpc_server::MAX_DECODING_MESSAGE_SIZE;

/// Log line format, chosen by `LOG_FORMAT` (`text` or `json`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global `tracing` subscriber. The filter comes from `RUST_LOG` (default `info`).
/// Safe to call more than once (later calls do nothing), so tests and devstack can share it.
/// Text lines are coloured only on a terminal: in a file or a log collector the escape codes
/// would sit between a field's name and its `=`, and `grep order_id=…` would find nothing.
pub fn init_telemetry(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Text => registry
            .with(fmt::layer().with_ansi(std::io::stdout().is_terminal()))
            .try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true))
            .try_init(),
    };
}

/// Resolves on Ctrl-C or SIGTERM: the signal to stop accepting work and drain.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}

/// The health service (`grpc.health.v1.Health`) and the reporter that sets its statuses.
pub fn health_reporter() -> (
    tonic_health::server::HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    let (reporter, service) = tonic_health::server::health_reporter();
    let service = service.max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE);
    (reporter, service)
}

/// Server reflection in both protocol versions: grpcurl 1.8 asks `v1alpha`, newer tools `v1`.
pub fn reflection_services() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    tonic_reflection::server::Error,
> {
    let v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?
        .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE);
    let v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?
        .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE);
    Ok((v1, v1alpha))
}
