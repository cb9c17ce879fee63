//! A pay-svc replica that goes silent without closing anything (its host lost power, or a
//! partition black-holes it) while the gateway holds an open connection to it. The replica
//! sits behind a TCP relay that can be switched to forward nothing, in either direction, while
//! keeping every socket open and no longer accepting connections (so that a new dial times out,
//! as one to a powered-off host does). The gateway's HTTP/2 PINGs must find the connection
//! dead within seconds; until then the calls sent to that replica time out.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use paynotify::proto::pay::v1::NotifyOutcome;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpSocket, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};
use tokio_util::sync::CancellationToken;

use crate::{
    Harness, NOTIFICATION, SUCCESS_ACK,
    fake_pay_svc::{FakePaySvc, Script},
    is_fail_ack,
};

/// Forwards every connection it accepts to `target`, until [`Relay::black_hole`].
struct Relay {
    addr: SocketAddr,
    /// Connections accepted.
    connections: Arc<AtomicUsize>,
    /// Bytes forwarded from the client to the target, and back.
    to_target: Arc<AtomicU64>,
    to_client: Arc<AtomicU64>,
    hole: CancellationToken,
    stop: CancellationToken,
    /// Connections that fill the listen backlog once black-holed.
    backlog: Vec<TcpStream>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        // A short accept queue, filled at once when black-holed (see `black_hole`).
        let listener = socket.listen(1).unwrap();
        let relay = Relay {
            addr: listener.local_addr().unwrap(),
            connections: Arc::default(),
            to_target: Arc::default(),
            to_client: Arc::default(),
            hole: CancellationToken::new(),
            stop: CancellationToken::new(),
            backlog: Vec::new(),
        };
        let (connections, to_target, to_client) = (
            relay.connections.clone(),
            relay.to_target.clone(),
            relay.to_client.clone(),
        );
        let (hole, stop) = (relay.hole.clone(), relay.stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    biased;
                    () = stop.cancelled() => return,
                    () = hole.cancelled() => break,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { return };
                connections.fetch_add(1, Ordering::Relaxed);
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                for (from, to, count) in [
                    (client_read, server_write, to_target.clone()),
                    (server_read, client_write, to_client.clone()),
                ] {
                    tokio::spawn(pump(from, to, count, hole.clone(), stop.clone()));
                }
            }
            // Black-holed: the listener stays open, but nothing is accepted any more.
            stop.cancelled().await;
            drop(listener);
        });
        relay
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on nothing is forwarded and every socket stays open; the listener stays open
    /// too, with a full accept queue, so that the kernel drops new SYNs and a dial times out
    /// instead of being refused.
    async fn black_hole(&mut self) {
        self.hole.cancel();
        for _ in 0..16 {
            match tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(self.addr))
                .await
            {
                Ok(connected) => self.backlog.push(connected.unwrap()),
                Err(_) => return,
            }
        }
        panic!("the relay's accept queue never filled up");
    }
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    count: Arc<AtomicU64>,
    hole: CancellationToken,
    stop: CancellationToken,
) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let read = tokio::select! {
            biased;
            () = hole.cancelled() => break,
            read = from.read(&mut buf) => read,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if hole.is_cancelled() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
    // Black-holed: hold both sockets open, forwarding nothing.
    stop.cancelled().await;
}

#[tokio::test]
async fn a_black_holed_replica_is_dropped_within_seconds_and_the_other_one_answers() {
    let first = FakePaySvc::start(Script::Verdict(NotifyOutcome::Paid, true, "paid")).await;
    let second = FakePaySvc::start(Script::Verdict(NotifyOutcome::Paid, true, "paid")).await;
    let mut relay = Relay::start(first.addr).await;
    let urls = vec![relay.url(), format!("http://{}", second.addr)];
    // Calls time out after 1 s (the harness's upstream timeout).
    let h = Harness::start_with(second.clone(), |config| config.pay_svc_urls = urls).await;

    for _ in 0..4 {
        let (_, body) = h.post(NOTIFICATION).await;
        assert_eq!(body, SUCCESS_ACK);
    }
    assert_eq!((first.calls(), second.calls()), (2, 2));

    relay.black_hole().await;
    let holed = Instant::now();

    // Until the gateway finds the connection dead, calls round-robined to the first replica
    // time out (FAIL). Once it has, every call is answered by the second: the first is tried,
    // found down (its redial times out as UNAVAILABLE) and skipped. Wait for 3 s without a
    // FAIL, which covers the first replica's 2 s down mark expiring at least once.
    let mut fails = 0;
    let mut last_fail = None;
    loop {
        let (status, body) = h.post(NOTIFICATION).await;
        assert_eq!(status, 200);
        if body != SUCCESS_ACK {
            assert!(is_fail_ack(&body), "{body}");
            fails += 1;
            last_fail = Some(Instant::now());
        }
        if last_fail.unwrap_or(holed).elapsed() >= Duration::from_secs(3) {
            break;
        }
        assert!(
            holed.elapsed() < Duration::from_secs(14),
            "{fails} notifications answered FAIL in the {:?} since the replica went silent",
            holed.elapsed(),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let recovered_after = last_fail.map_or(Duration::ZERO, |at| at - holed);
    assert!(
        recovered_after <= Duration::from_secs(10),
        "answered FAIL until {recovered_after:?} after the replica went silent"
    );
    // Nothing got through to the silent replica.
    assert_eq!(first.calls(), 2);
    assert!(second.calls() > 2);
}

#[tokio::test]
async fn pings_keep_an_idle_connection_to_a_replica_open() {
    let replica = FakePaySvc::start(Script::Verdict(NotifyOutcome::Paid, true, "paid")).await;
    let relay = Relay::start(replica.addr).await;
    let urls = vec![relay.url()];
    let h = Harness::start_with(replica.clone(), |config| config.pay_svc_urls = urls).await;

    let (_, body) = h.post(NOTIFICATION).await;
    assert_eq!(body, SUCCESS_ACK);
    // Let the frames that trail the call settle, then stay idle past the ping interval.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = relay.to_target.load(Ordering::Relaxed);
    let answered = relay.to_client.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        relay.to_target.load(Ordering::Relaxed) > sent,
        "no PING sent"
    );
    assert!(
        relay.to_client.load(Ordering::Relaxed) > answered,
        "no PONG"
    );

    // The server took the PING as it should: the same connection still carries calls.
    let (_, body) = h.post(NOTIFICATION).await;
    assert_eq!(body, SUCCESS_ACK);
    assert_eq!(relay.connections.load(Ordering::Relaxed), 1);
}
