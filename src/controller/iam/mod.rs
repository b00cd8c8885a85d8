//! The IAM side of the controller.

pub mod worker;
