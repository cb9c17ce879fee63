//! wxpay-sim (placeholder until built).
