//! A pay-svc that answers ConfirmPayment from a script and records what it was sent.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use paynotify::proto::pay::v1::{
    ConfirmPaymentRequest, ConfirmPaymentResponse, CreateNativePayRequest, CreateNativePayResponse,
    NotifyOutcome, QueryOrderRequest, QueryOrderResponse,
    pay_service_server::{PayService, PayServiceServer},
};
use tokio_util::sync::CancellationToken;
use tonic::codegen::tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, transport::ServerTlsConfig};

/// Every call's fields and `x-request-id`.
pub type Received = Arc<Mutex<Vec<(HashMap<String, String>, Option<String>)>>>;

#[derive(Clone)]
pub enum Script {
    Verdict(NotifyOutcome, bool, &'static str),
    Error(tonic::Code),
    /// UNAVAILABLE because the named dependency failed, as pay-svc marks it.
    DependencyDown(&'static str),
    Slow(Duration),
}

#[derive(Clone)]
pub struct FakePaySvc {
    pub addr: SocketAddr,
    pub received: Received,
    stop: CancellationToken,
}

impl Drop for FakePaySvc {
    fn drop(&mut self) {
        if Arc::strong_count(&self.received) == 1 {
            self.stop.cancel();
        }
    }
}

impl FakePaySvc {
    pub async fn start(script: Script) -> FakePaySvc {
        FakePaySvc::serve(script, None).await
    }

    /// The same over TLS with `tls` as its identity; reach it at [`FakePaySvc::https_url`].
    pub async fn start_tls(script: Script, tls: ServerTlsConfig) -> FakePaySvc {
        FakePaySvc::serve(script, Some(tls)).await
    }

    async fn serve(script: Script, tls: Option<ServerTlsConfig>) -> FakePaySvc {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let service = Scripted {
            script,
            received: received.clone(),
        };
        let stop = CancellationToken::new();
        let token = stop.clone();
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).unwrap();
        }
        tokio::spawn(
            builder
                .add_service(PayServiceServer::new(service))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                    token.cancelled().await
                }),
        );
        FakePaySvc {
            addr,
            received,
            stop,
        }
    }

    /// Its address by the name its test certificate carries.
    pub fn https_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// An address where nothing listens.
    pub async fn down() -> FakePaySvc {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        FakePaySvc {
            addr,
            received: Arc::new(Mutex::new(Vec::new())),
            stop: CancellationToken::new(),
        }
    }

    pub fn calls(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

struct Scripted {
    script: Script,
    received: Received,
}

#[tonic::async_trait]
impl PayService for Scripted {
    async fn confirm_payment(
        &self,
        request: Request<ConfirmPaymentRequest>,
    ) -> Result<Response<ConfirmPaymentResponse>, Status> {
        let request_id = request
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.received
            .lock()
            .unwrap()
            .push((request.into_inner().fields, request_id));
        match &self.script {
            Script::Verdict(outcome, acknowledge, reason) => {
                Ok(Response::new(ConfirmPaymentResponse {
                    outcome: *outcome as i32,
                    acknowledge: *acknowledge,
                    reason: (*reason).to_owned(),
                    ..Default::default()
                }))
            }
            Script::Error(code) => Err(Status::new(*code, "scripted failure")),
            Script::DependencyDown(dependency) => {
                let mut status = Status::unavailable("scripted dependency failure");
                status.metadata_mut().insert(
                    paynotify::replicas::DEPENDENCY_FAILED,
                    tonic::metadata::MetadataValue::from_static(dependency),
                );
                Err(status)
            }
            Script::Slow(delay) => {
                tokio::time::sleep(*delay).await;
                Ok(Response::new(ConfirmPaymentResponse {
                    outcome: NotifyOutcome::Paid as i32,
                    acknowledge: true,
                    ..Default::default()
                }))
            }
        }
    }

    async fn create_native_pay(
        &self,
        _: Request<CreateNativePayRequest>,
    ) -> Result<Response<CreateNativePayResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }

    async fn query_order(
        &self,
        _: Request<QueryOrderRequest>,
    ) -> Result<Response<QueryOrderResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
}
