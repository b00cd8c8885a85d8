//! PURE decisions of the controller.

pub mod annotate;
pub mod authz;
pub mod desired;
pub mod status;
