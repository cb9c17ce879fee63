//! A TCP round-robin load balancer in the test process, standing in for the reverse proxy in
//! front of the gateways (docs/DEPLOYMENT.md): WeChat knows one notify_url, the proxy spreads
//! connections over the gateways and skips one that refuses the connection. A connection
//! already forwarded to a gateway that dies is cut, as a real proxy would cut it, and WeChat
//! (the simulator) sends that notification again.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

/// How long connecting to one gateway may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// A running balancer; stops (cutting every forwarded connection) when dropped.
#[derive(Debug)]
pub struct Balancer {
    addr: SocketAddr,
    forwarded: Arc<[AtomicU64]>,
    task: JoinHandle<()>,
}

impl Balancer {
    /// Listens on a free port of 127.0.0.1 and forwards to `backends`.
    pub async fn start(backends: Vec<SocketAddr>) -> anyhow::Result<Balancer> {
        anyhow::ensure!(!backends.is_empty(), "a balancer needs a backend");
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let forwarded: Arc<[AtomicU64]> = backends.iter().map(|_| AtomicU64::new(0)).collect();
        let task = tokio::spawn(accept_loop(listener, backends.into(), forwarded.clone()));
        Ok(Balancer {
            addr,
            forwarded,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The notify_url WeChat is given: the gateways' path on the balancer.
    pub fn notify_url(&self) -> String {
        format!("http://{}/wxpay/notify", self.addr)
    }

    /// Connections forwarded to each backend so far.
    pub fn forwarded(&self) -> Vec<u64> {
        self.forwarded
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    backends: Arc<[SocketAddr]>,
    forwarded: Arc<[AtomicU64]>,
) {
    // Owned here, so aborting this task cuts every forwarded connection too.
    let mut connections = JoinSet::new();
    let mut next = 0usize;
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let first = next;
        next = next.wrapping_add(1);
        connections.spawn(forward(client, backends.clone(), first, forwarded.clone()));
    }
}

/// Connects to the backends in turn from `first` and pipes bytes both ways; with none
/// reachable the client's connection is closed unanswered.
async fn forward(
    mut client: TcpStream,
    backends: Arc<[SocketAddr]>,
    first: usize,
    forwarded: Arc<[AtomicU64]>,
) {
    let _ = client.set_nodelay(true);
    for offset in 0..backends.len() {
        let index = (first + offset) % backends.len();
        let Ok(Ok(mut upstream)) =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backends[index])).await
        else {
            continue;
        };
        forwarded[index].fetch_add(1, Ordering::Relaxed);
        let _ = upstream.set_nodelay(true);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        return;
    }
}
