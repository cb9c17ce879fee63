//! pay-svc integration tests (written once order-svc and wxpay-sim exist).
