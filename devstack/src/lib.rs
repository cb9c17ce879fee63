//! devstack (placeholder until built).
