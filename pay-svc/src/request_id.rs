//! The gateway's request id (gRPC metadata `x-request-id`), carried from a PayService call
//! into the order-svc calls it makes, so one notification can be followed through every
//! service's logs. The handler runs inside [`scope`]; the outgoing interceptor ([`Outgoing`])
//! copies the id onto each order-svc request along with the bearer token.

use std::future::Future;

use paynotify::auth::AttachBearer;
use tonic::{Request, Status, metadata::AsciiMetadataValue, service::Interceptor};

pub const HEADER: &str = paynotify::grpc_server::REQUEST_ID_HEADER;

tokio::task_local! {
    static REQUEST_ID: AsciiMetadataValue;
}

/// The id an incoming request carries, if any.
pub fn of<T>(request: &Request<T>) -> Option<AsciiMetadataValue> {
    request.metadata().get(HEADER).cloned()
}

/// Runs `work` with `id` as the current request id.
pub async fn scope<F: Future>(id: Option<AsciiMetadataValue>, work: F) -> F::Output {
    match id {
        Some(id) => REQUEST_ID.scope(id, work).await,
        None => work.await,
    }
}

/// The interceptor on pay-svc's order-svc channel: bearer token and current request id.
#[derive(Clone)]
pub struct Outgoing {
    bearer: AttachBearer,
}

impl Outgoing {
    pub fn new(bearer: AttachBearer) -> Outgoing {
        Outgoing { bearer }
    }
}

impl Interceptor for Outgoing {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let mut request = self.bearer.call(request)?;
        if let Ok(id) = REQUEST_ID.try_with(Clone::clone) {
            request.metadata_mut().insert(HEADER, id);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_current_id_is_copied_onto_outgoing_calls() {
        let mut outgoing = Outgoing::new(AttachBearer::new(None).unwrap());
        let mut incoming = Request::new(());
        incoming
            .metadata_mut()
            .insert(HEADER, AsciiMetadataValue::from_static("req-1"));

        let sent = scope(of(&incoming), async { outgoing.call(Request::new(())) })
            .await
            .unwrap();
        assert_eq!(sent.metadata().get(HEADER).unwrap(), "req-1");

        let without = outgoing.call(Request::new(())).unwrap();
        assert!(without.metadata().get(HEADER).is_none());
    }
}
