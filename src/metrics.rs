//! Prometheus metrics (prefix `irsa_`).
