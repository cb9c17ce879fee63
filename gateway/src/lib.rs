//! gateway (placeholder until built).
