//! The Kubernetes side of the controller: the `IAMRoleBinding` reconciler ([`reconcile`]),
//! the reflector stores and the snapshot built from them ([`snapshot`]), and the Events
//! published from role reports ([`events`]). It hands roles to the IAM side through
//! [`iam::queue`](crate::controller::iam::queue) and reads its reports; the IAM side never
//! depends on this module.

pub mod events;
pub mod reconcile;
pub mod snapshot;
