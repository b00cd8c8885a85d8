//! The Kubernetes side of the controller.

pub mod reconcile;
