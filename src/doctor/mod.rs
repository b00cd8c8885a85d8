//! `irsa doctor`: explains, step by step, why a pod or ServiceAccount can or cannot assume
//! its role. [`checks`] decides (pure), [`report`] prints, [`sources`] and [`diagnose`]
//! fetch the facts. It only reads (plus a TokenRequest, and the STS call with `--assume`).
//! `irsa doctor`'s flags become a [`diagnose::Target`] and [`diagnose::Options`] in
//! `crate::commands::doctor`.

pub mod checks;
pub mod diagnose;
pub mod pod_identity;
pub mod report;
pub mod sources;
pub mod webhook;
