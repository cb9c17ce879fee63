//! Hostile input gets a quick FAIL ack or a 4xx, never reaches pay-svc, and the gateway
//! keeps serving.

use std::time::{Duration, Instant};

use paynotify::proto::pay::v1::NotifyOutcome;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    Harness, NOTIFICATION, SUCCESS_ACK,
    fake_pay_svc::{FakePaySvc, Script},
    is_fail_ack,
};

async fn harness() -> Harness {
    Harness::start(FakePaySvc::start(Script::Verdict(NotifyOutcome::Paid, true, "paid")).await)
        .await
}

async fn assert_still_serving(h: &Harness) {
    let before = h.pay_svc.calls();
    let (status, body) = h.post(NOTIFICATION).await;
    assert_eq!((status, body.as_str()), (200, SUCCESS_ACK));
    assert_eq!(h.pay_svc.calls(), before + 1);
}

#[tokio::test]
async fn hostile_bodies_are_refused_without_calling_pay_svc() {
    let h = harness().await;
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("xxe", b"<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><a>&x;</a></xml>".to_vec(), 400),
        ("billion laughs", b"<!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]><xml><a>&b;</a></xml>".to_vec(), 400),
        ("custom entity", b"<xml><a>&b;</a></xml>".to_vec(), 400),
        ("empty", Vec::new(), 400),
        ("not xml", b"hello".to_vec(), 400),
        ("json", b"{\"return_code\":\"SUCCESS\"}".to_vec(), 400),
        ("nested", b"<xml><a><b>1</b></a></xml>".to_vec(), 400),
        ("duplicate field", b"<xml><a>1</a><a>2</a></xml>".to_vec(), 400),
        ("wrong root", b"<html><body>hi</body></html>".to_vec(), 400),
        ("unterminated", b"<xml><a>1</a>".to_vec(), 400),
        ("gbk bytes", b"<xml><attach>\xd6\xa7\xb8\xb6</attach></xml>".to_vec(), 400),
        ("invalid utf-8", b"<xml><a>\xff\xfe</a></xml>".to_vec(), 400),
        ("over 64 KiB", format!("<xml><a>{}</a></xml>", "x".repeat(70 * 1024)).into_bytes(), 413),
    ];
    for (name, body, expected_status) in cases {
        let started = Instant::now();
        let (status, reply) = h.post(body).await;
        assert_eq!(status, expected_status, "{name}");
        assert!(is_fail_ack(&reply), "{name}: {reply}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{name} was slow"
        );
    }
    assert_eq!(h.pay_svc.calls(), 0);
    assert_still_serving(&h).await;
}

#[tokio::test]
async fn an_oversized_chunked_body_is_cut_off() {
    let h = harness().await;
    let mut stream = TcpStream::connect(h.gateway).await.unwrap();
    stream
        .write_all(b"POST /wxpay/notify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    // 100 chunks of 4 KiB: no Content-Length to refuse up front, so the limit applies while
    // reading. The gateway may answer and close before everything is written.
    let chunk = format!("1000\r\n{}\r\n", "x".repeat(4096));
    for _ in 0..100 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let mut reply = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut reply))
        .await
        .expect("no reply")
        .unwrap_or(0);
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert_eq!(h.pay_svc.calls(), 0);
    assert_still_serving(&h).await;
}

#[tokio::test]
async fn a_body_that_trickles_in_is_dropped_after_the_body_timeout() {
    let h = harness().await;
    let mut stream = TcpStream::connect(h.gateway).await.unwrap();
    stream
        .write_all(b"POST /wxpay/notify HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n<xml>")
        .await
        .unwrap();
    let started = Instant::now();
    let mut reply = Vec::new();
    // Send one byte every 100 ms; the gateway gives the body 500 ms in this harness.
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if stream.write_all(b" ").await.is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await
        {
            reply.extend_from_slice(&buf[..n]);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(3), "never cut off");
    }
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert_eq!(h.pay_svc.calls(), 0);
    assert_still_serving(&h).await;
}

#[tokio::test]
async fn wrong_method_and_path_are_4xx() {
    let h = harness().await;
    let client = reqwest::Client::new();
    let get = client.get(h.notify_url()).send().await.unwrap();
    assert_eq!(get.status(), 405);
    let other = client
        .post(format!("http://{}/wxpay/other", h.gateway))
        .body(NOTIFICATION)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    assert_eq!(h.pay_svc.calls(), 0);
}

#[tokio::test]
async fn a_flood_of_idle_connections_is_shed_and_the_gateway_recovers() {
    let h = Harness::start_with(
        FakePaySvc::start(Script::Verdict(NotifyOutcome::Paid, true, "paid")).await,
        |config| config.max_connections = 64,
    )
    .await;
    // 500 connections that never send a request: 64 are held until the header read timeout
    // (1 s in this harness), the rest are closed at once.
    let mut idle = Vec::new();
    for _ in 0..500 {
        if let Ok(stream) = TcpStream::connect(h.gateway).await {
            idle.push(stream);
        }
    }
    let started = Instant::now();
    let acked = loop {
        let attempt = reqwest::Client::new()
            .post(h.notify_url())
            .body(NOTIFICATION)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if let Ok(response) = attempt {
            break response.text().await.unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "gateway did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(acked, SUCCESS_ACK);
    drop(idle);
    assert_still_serving(&h).await;
}
