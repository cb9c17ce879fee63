//! Test harness: a simulator on port 0, a scriptable notify_url receiver, and a signed WeChat
//! API caller.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use parking_lot::Mutex;
use paynotify::wxpay::{
    Fields,
    reply::{SUCCESS_ACK, fail_ack},
    sign::SignType,
    xml,
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use wxpay_sim::{Config, DEMO_API_KEY, DEMO_APPID, DEMO_MCH_ID, SimClient, signed_xml};

pub const KEY: &str = DEMO_API_KEY;

/// A running simulator.
pub struct Sim {
    pub base: String,
    pub client: SimClient,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<anyhow::Result<()>>,
}

/// The test configuration: port 0 and WeChat's day compressed a thousandfold. The reply
/// deadline is generous so that a loaded machine cannot turn a quick reply into a failure;
/// tests of the deadline set their own.
pub fn fast_config() -> Config {
    Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        time_scale: 0.001,
        reply_deadline_ms: Some(2000),
        ..Config::default()
    }
}

impl Sim {
    pub async fn start() -> Sim {
        Sim::start_with(fast_config()).await
    }

    pub async fn start_with(config: Config) -> Sim {
        let server = wxpay_sim::bind(config).await.unwrap();
        let base = server.base_url();
        let (stop, stopped) = oneshot::channel();
        let handle = tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        Sim {
            client: SimClient::new(base.clone()),
            base,
            stop: Some(stop),
            handle,
        }
    }

    /// Shuts down and returns how long that took.
    pub async fn stop(mut self) -> Duration {
        let started = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.handle)
            .await
            .expect("simulator did not stop within 5 s")
            .unwrap()
            .unwrap();
        started.elapsed()
    }

    /// Calls a WeChat endpoint with `fields` signed by `key` and parses the answer.
    pub async fn wechat(
        &self,
        path: &str,
        fields: Fields,
        key: &str,
        sign_type: SignType,
    ) -> Fields {
        let body = signed_xml(fields, key, sign_type);
        self.post_xml(path, body).await
    }

    /// Calls a WeChat endpoint with the demo key, MD5.
    pub async fn call(&self, path: &str, fields: Fields) -> Fields {
        self.wechat(path, fields, KEY, SignType::Md5).await
    }

    pub async fn post_xml(&self, path: &str, body: String) -> Fields {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        xml::parse(&response.bytes().await.unwrap()).unwrap()
    }

    /// Places a NATIVE order through unifiedorder and returns the answer.
    pub async fn unified_order(
        &self,
        out_trade_no: &str,
        total_fee: i64,
        notify_url: &str,
    ) -> Fields {
        let answer = self
            .call(
                "/pay/unifiedorder",
                order_request(out_trade_no, total_fee, notify_url),
            )
            .await;
        assert_eq!(answer["result_code"], "SUCCESS", "{answer:?}");
        answer
    }
}

pub fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The merchant part every request carries.
pub fn merchant_fields() -> Fields {
    fields(&[("appid", DEMO_APPID), ("mch_id", DEMO_MCH_ID)])
}

pub fn with(mut base: Fields, pairs: &[(&str, &str)]) -> Fields {
    base.extend(fields(pairs));
    base
}

/// A valid unifiedorder request for a NATIVE order (unsigned).
pub fn order_request(out_trade_no: &str, total_fee: i64, notify_url: &str) -> Fields {
    with(
        merchant_fields(),
        &[
            ("body", "测试商品"),
            ("out_trade_no", out_trade_no),
            ("total_fee", &total_fee.to_string()),
            ("spbill_create_ip", "127.0.0.1"),
            ("notify_url", notify_url),
            ("trade_type", "NATIVE"),
            ("product_id", "P1"),
        ],
    )
}

/// What a receiver answers to one notification.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn success() -> Reply {
        Reply::text(200, SUCCESS_ACK)
    }

    pub fn fail() -> Reply {
        Reply::text(200, &fail_ack("not yet"))
    }

    pub fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// A notification received by a [`Receiver`].
#[derive(Clone, Debug)]
pub struct Hit {
    pub at: Instant,
    pub content_type: Option<String>,
    pub fields: Fields,
}

/// A notify_url that answers from a script (the last reply repeats) and records what came.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<ReceiverState>,
}

struct ReceiverState {
    script: Vec<Reply>,
    hits: Mutex<Vec<Hit>>,
}

impl Receiver {
    pub async fn start(script: Vec<Reply>) -> Receiver {
        assert!(!script.is_empty());
        let inner = Arc::new(ReceiverState {
            script,
            hits: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/wxpay/notify", listener.local_addr().unwrap());
        let router = Router::new()
            .route("/wxpay/notify", post(receive))
            .with_state(Arc::clone(&inner));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver { url, inner }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.inner.hits.lock().clone()
    }

    /// Waits until at least `n` notifications arrived (at most 5 s).
    pub async fn wait_for_hits(&self, n: usize) -> Vec<Hit> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let hits = self.hits();
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} notifications arrived",
                hits.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let reply = {
        let mut hits = state.hits.lock();
        hits.push(Hit {
            at: Instant::now(),
            content_type: headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            fields: xml::parse(&body).unwrap_or_default(),
        });
        let index = (hits.len() - 1).min(state.script.len() - 1);
        state.script[index].clone()
    };
    tokio::time::sleep(reply.delay).await;
    (StatusCode::from_u16(reply.status).unwrap(), reply.body)
}
