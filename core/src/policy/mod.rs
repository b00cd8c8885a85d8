//! PURE decisions of the controller, table-tested: who may be trusted ([`authz`]), what a role
//! should trust ([`desired`]), the trust document to write ([`plan`]), what it led to
//! ([`report`]), the binding's status ([`status`]), its ServiceAccount annotations
//! ([`annotate`]) and which pods lack the credentials their ServiceAccount's role calls for
//! ([`uninjected`]). No I/O, no tokio, no Kubernetes client here; `iam/` and `k8s/` call in.

pub mod annotate;
pub mod authz;
pub mod desired;
pub mod plan;
pub mod report;
pub mod status;
pub mod uninjected;
