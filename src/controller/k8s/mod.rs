//! The Kubernetes side of the controller: the `IAMRoleBinding` reconciler ([`reconcile`]),
//! the `PodIdentityAssociation` status reconciler ([`associations`]),
//! the reflector stores, their indexes ([`index`]) and the snapshot built from them
//! ([`snapshot`]), the ServiceAccount writes it made itself ([`own_writes`]), the Events
//! published from role reports ([`events`]), and the watch of pods that were not injected
//! ([`pods`]). It hands roles to the IAM side through
//! [`iam::queue`](crate::controller::iam::queue) and reads its reports; the IAM side never
//! depends on this module.

pub mod associations;
pub mod events;
pub mod index;
pub mod own_writes;
pub mod pods;
pub mod reconcile;
pub mod snapshot;
