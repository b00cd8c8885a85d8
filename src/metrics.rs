//! What the webhook's and the controller's admin ports share: the Prometheus (OpenMetrics)
//! text exposition of a registry. Each component keeps its own metrics (`irsa_webhook_`,
//! `irsa_controller_` prefixes) in its own module.

use axum::{
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use prometheus_client::registry::Registry;

pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

/// The `GET /metrics` answer for `registry`.
pub fn response(registry: &Registry) -> Response {
    match encode(registry) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {err}\n"),
        )
            .into_response(),
    }
}
