//! irsa's pure core: what the product decides, with no I/O. The webhook, the controller and
//! the doctor (the `irsa` crate) translate between the world and these modules:
//! [`mutate`] (the admission patch), [`trust`] (trust-policy compilation and evaluation),
//! [`policy`] (the controller's decisions: authorization, desired trust, plan, status,
//! annotations, uninjected pods), [`pod_identity`] (the agent's session name, session tags
//! and grant check), [`crd_status`], [`arn`], [`issuer`] (the issuer URL and its `host/path`
//! rule) and [`names`].
//!
//! The dependency list in Cargo.toml is what keeps it pure: no kube client, tokio, AWS SDK or
//! clap. Kubernetes appears only as k8s-openapi's plain types.

// Index and slice only through checked APIs (`get`, `strip_prefix`, `split_once`, ...): a byte
// index into request or issuer data is a panic waiting for a multi-byte character. Denied
// here rather than in Cargo.toml's [lints], which would hold every test crate to it as well;
// `#[cfg(test)]` code is exempt through clippy.toml.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

pub mod arn;
pub mod crd_status;
#[cfg(any(test, feature = "testing"))]
pub mod fixtures;
pub mod issuer;
pub mod mutate;
pub mod names;
pub mod pod_identity;
pub mod policy;
pub mod trust;
