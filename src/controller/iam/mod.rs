//! The IAM side of the controller: roles marked dirty by the Kubernetes side ([`queue`]) are
//! reconciled in debounced passes ([`worker`]), one role at a time ([`reconcile`]); every
//! role's latest [`RoleReport`](crate::controller::policy::report::RoleReport) is kept in
//! [`state`] and sent to the Kubernetes side. Nothing here reads the Kubernetes API.

pub mod queue;
pub mod reconcile;
pub mod state;
pub mod worker;
