//! The test stack: a real order-svc on a fresh SQLite database, the real WeChat simulator and
//! pay-svc itself, each in-process on 127.0.0.1:0, plus helpers to make orders and signed
//! notifications. Dropping a [`Stack`] shuts everything down.

use std::{collections::HashMap, future::Future, net::SocketAddr, time::Duration};

use order_svc::testing::{Backend, TestDatabase, TestServer};
use paynotify::auth::AttachBearer;
use paynotify::{
    proto::{
        order::v1::{
            CreateOrderRequest, GetOrderRequest, ListOrderLogsRequest, Order, OrderLog,
            order_service_client::OrderServiceClient,
        },
        pay::v1::{
            ConfirmPaymentRequest, ConfirmPaymentResponse, CreateNativePayRequest,
            pay_service_client::PayServiceClient,
        },
    },
    wxpay::{Fields, sign::SignType, xml},
};
use secrecy::SecretString;
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{service::interceptor::InterceptedService, transport::Channel};
use wxpay_sim::{DEMO_API_KEY, DEMO_APPID, DEMO_MCH_ID, Notification, SimClient};

const LOCAL_ANY_PORT: ([u8; 4], u16) = ([127, 0, 0, 1], 0);

/// The bearer token that opens every PayService method (pay-svc's GRPC_AUTH_TOKEN): the test
/// holds it as the merchant's systems do, and calls ConfirmPayment with it in the gateway's
/// place.
pub const TOKEN: &str = "stack-test-token-0123456789abcdef";

/// The gateway's own token (pay-svc's GATEWAY_AUTH_TOKEN): ConfirmPayment only.
pub const GATEWAY_TOKEN: &str = "stack-test-gateway-token-0123456789";

/// The bearer token order-svc requires, which pay-svc sends (its ORDER_SVC_AUTH_TOKEN); the
/// test holds it too, to create and read orders as the merchant's systems do.
pub const ORDER_TOKEN: &str = "stack-test-order-svc-token-0123456789";

/// A gRPC client that carries a bearer token.
pub type Authed = InterceptedService<Channel, AttachBearer>;

pub fn bearer(token: &str) -> AttachBearer {
    AttachBearer::new(Some(&SecretString::from(token))).expect("valid token")
}

/// Every test ends within this, or fails.
pub const TEST_DEADLINE: Duration = Duration::from_secs(60);

/// Runs a test body under [`TEST_DEADLINE`].
pub async fn bounded<F: Future<Output = ()>>(body: F) {
    tokio::time::timeout(TEST_DEADLINE, body)
        .await
        .expect("test exceeded its deadline");
}

/// A service running in this process until told to stop.
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    fn spawn<F>(run: impl FnOnce(oneshot::Receiver<()>) -> F) -> Running
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        Running {
            stop: Some(stop),
            task: Some(tokio::spawn(run(stopped))),
        }
    }

    /// Shuts down gracefully and waits for it, at most a few seconds.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("service did not stop in time")
                .expect("service task panicked")
                .expect("service ended with an error");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub struct Stack {
    pub orders: OrderServiceClient<Authed>,
    pub pay: PayServiceClient<Authed>,
    /// Without the token.
    pub pay_channel: Channel,
    pub sim: SimClient,
    pub sim_url: String,
    pub pay_svc: Running,
    /// `None` once stopped by a test.
    pub order_svc: Option<TestServer>,
    _sim: Running,
    _db: TestDatabase,
}

/// A real order-svc on `database`, requiring [`ORDER_TOKEN`], on `addr` (any free port when
/// `None`), and a client for it.
pub async fn start_order_svc(
    database: &TestDatabase,
    addr: Option<SocketAddr>,
) -> (TestServer, OrderServiceClient<Authed>) {
    let mut config = order_svc::Config::for_database(database.url()).expect("order-svc config");
    config.grpc_auth_token = Some(SecretString::from(ORDER_TOKEN));
    if let Some(addr) = addr {
        config.listen_addr = addr;
    }
    let server = TestServer::start_with(config).await.expect("order-svc");
    let channel = Channel::from_shared(server.endpoint())
        .expect("order-svc URL")
        .connect()
        .await
        .expect("order-svc channel");
    (
        server,
        OrderServiceClient::with_interceptor(channel, bearer(ORDER_TOKEN)),
    )
}

/// Reconciliation every second over every unpaid order, fast: for [`stack_with`].
pub fn reconciling_every_second(config: &mut pay_svc::Config) {
    config.reconcile_interval_secs = 1;
    config.reconcile_min_age_secs = 0;
    config.reconcile_queries_per_sec = 50.0;
}

/// The stack with reconciliation off: it would spend orderquery calls the tests count.
pub async fn stack() -> Stack {
    stack_with(|_| {}).await
}

/// The stack, with pay-svc's config changed by `tweak` after the stack's addresses are set
/// (`config.wxpay_api_base` is the simulator).
pub async fn stack_with(tweak: impl FnOnce(&mut pay_svc::Config)) -> Stack {
    let db = TestDatabase::create(Backend::Sqlite)
        .await
        .expect("test database");
    let (order_svc, orders) = start_order_svc(&db, None).await;

    let sim = wxpay_sim::bind(wxpay_sim::Config {
        addr: LOCAL_ANY_PORT.into(),
        ..wxpay_sim::Config::default()
    })
    .await
    .expect("wxpay-sim");
    let sim_url = sim.base_url();
    let sim_running = Running::spawn(|stopped| {
        sim.run_until(async {
            let _ = stopped.await;
        })
    });

    let mut config = pay_svc::Config {
        addr: LOCAL_ANY_PORT.into(),
        order_svc_url: order_svc.endpoint(),
        wxpay_api_base: sim_url.clone(),
        reconcile_interval_secs: 0,
        // Fast failure paths, so "unavailable" cases finish quickly.
        order_svc_connect_timeout_ms: 500,
        wxpay_connect_timeout_ms: 500,
        wxpay_timeout_ms: 2000,
        wxpay_retry_backoff_ms: 20,
        wxpay_appid: DEMO_APPID.into(),
        wxpay_mch_id: DEMO_MCH_ID.into(),
        wxpay_api_key: DEMO_API_KEY.into(),
        grpc_auth_token: Some(SecretString::from(TOKEN)),
        gateway_auth_token: Some(SecretString::from(GATEWAY_TOKEN)),
        order_svc_auth_token: Some(SecretString::from(ORDER_TOKEN)),
        metrics_addr: paynotify::metrics::AdminAddr::any_local_port(),
        ..pay_svc::Config::default()
    };
    tweak(&mut config);
    let pay = pay_svc::bind(config).await.expect("pay-svc");
    let pay_url = format!("http://{}", pay.local_addr());
    let pay_running = Running::spawn(|stopped| {
        pay.run_until(async {
            let _ = stopped.await;
        })
    });

    let pay_channel = Channel::from_shared(pay_url)
        .expect("pay-svc URL")
        .connect()
        .await
        .expect("pay-svc channel");
    Stack {
        orders,
        pay: PayServiceClient::with_interceptor(pay_channel.clone(), bearer(TOKEN)),
        pay_channel,
        sim: SimClient::new(sim_url.clone()),
        sim_url,
        pay_svc: pay_running,
        order_svc: Some(order_svc),
        _sim: sim_running,
        _db: db,
    }
}

impl Stack {
    /// A new unpaid order in order-svc.
    pub async fn create_order(&mut self, pay_money: i64) -> Order {
        self.orders
            .create_order(CreateOrderRequest {
                pay_money,
                username: "tester".into(),
                ..CreateOrderRequest::default()
            })
            .await
            .expect("CreateOrder")
            .into_inner()
            .order
            .expect("order in response")
    }

    /// A new order that WeChat (the simulator) also knows, via pay-svc's CreateNativePay.
    pub async fn create_native_order(&mut self, pay_money: i64) -> Order {
        let order = self.create_order(pay_money).await;
        self.pay
            .create_native_pay(CreateNativePayRequest {
                out_trade_no: order.id.clone(),
                ..CreateNativePayRequest::default()
            })
            .await
            .expect("CreateNativePay");
        order
    }

    /// Creates, submits and pays an order at WeChat without a notification being sent;
    /// returns the order and WeChat's transaction_id.
    pub async fn paid_at_wechat(&mut self, pay_money: i64) -> (Order, String) {
        let order = self.create_native_order(pay_money).await;
        let paid = self.sim.pay(&order.id, false).await.expect("sim pay");
        (order, paid.transaction_id)
    }

    pub async fn order(&mut self, id: &str) -> Order {
        self.orders
            .get_order(GetOrderRequest { id: id.into() })
            .await
            .expect("GetOrder")
            .into_inner()
            .order
            .expect("order in response")
    }

    pub async fn logs(&mut self, id: &str) -> Vec<OrderLog> {
        self.orders
            .list_order_logs(ListOrderLogsRequest {
                order_id: id.into(),
            })
            .await
            .expect("ListOrderLogs")
            .into_inner()
            .logs
    }

    pub async fn orderquery_calls(&self) -> u64 {
        self.sim.stats().await.expect("sim stats").orderquery_calls
    }

    /// ConfirmPayment with these fields, as the gateway forwards a notification.
    pub async fn confirm(
        &mut self,
        fields: Fields,
    ) -> Result<ConfirmPaymentResponse, tonic::Status> {
        let fields: HashMap<String, String> = fields.into_iter().collect();
        self.pay
            .confirm_payment(ConfirmPaymentRequest { fields })
            .await
            .map(tonic::Response::into_inner)
    }
}

/// A successful payment notification for our demo merchant, as WeChat would send it.
pub fn paid_notification(out_trade_no: &str, total_fee: i64, transaction_id: &str) -> Notification {
    let mut notification = Notification::paid(DEMO_APPID, DEMO_MCH_ID, out_trade_no, total_fee);
    notification.transaction_id = transaction_id.into();
    notification
}

/// The notification's fields, signed with `key`, as they arrive at the gateway.
pub fn signed_with(notification: &Notification, key: &str) -> Fields {
    let xml = wxpay_sim::signed_notification(notification, key, SignType::Md5);
    xml::parse(xml.as_bytes()).expect("the simulator's XML parses")
}

/// Signed with the merchant's real key.
pub fn signed(notification: &Notification) -> Fields {
    signed_with(notification, DEMO_API_KEY)
}
