//! order-svc (placeholder until built).
