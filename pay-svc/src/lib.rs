//! pay-svc (placeholder until built).
