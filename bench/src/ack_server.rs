//! The HTTP floor: a bare hyper server that reads the whole body and answers WeChat's fixed
//! SUCCESS ack, built like the gateway's server (HTTP/1.1, TCP_NODELAY, a header timeout, a
//! body cap) but with nothing behind it. Run as `bench ack-server --addr ...`, its own process
//! like the services, so its figures are comparable with the gateway's.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use paynotify::wxpay::{reply::SUCCESS_ACK, xml::MAX_BODY_BYTES};
use tokio::net::TcpListener;

/// Serves until the process is killed.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service_fn(ack))
                .await;
        });
    }
}

async fn ack(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await;
    let mut response = Response::new(Full::new(Bytes::from_static(SUCCESS_ACK.as_bytes())));
    if body.is_err() {
        *response.status_mut() = http::StatusCode::BAD_REQUEST;
    }
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    Ok(response)
}
