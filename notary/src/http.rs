//! HTTP (to come).
