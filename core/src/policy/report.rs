//! PURE: what one role reconcile produced. [`RoleReport`] is the message the IAM side
//! (`iam/`) hands to the Kubernetes side (`k8s/`: status, events, re-triggers).

use crate::policy::desired::{Key, RoleDesired};
use crate::trust::Refusal;

/// The result of one role reconcile.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// IAM holds what the cluster wants (`writes` = 0: nothing needed changing).
    Applied {
        writes: u32,
        chars: usize,
        collapsed: Vec<String>,
        /// Our statements someone edited by hand, replaced (reported as events).
        hand_edited: Vec<String>,
    },
    /// Nothing of this cluster is wanted and nothing else is left: the role holds only
    /// [`PLACEHOLDER_SID`](crate::policy::plan::PLACEHOLDER_SID) (see
    /// [`plan`](crate::policy::plan)'s module docs).
    NoSubjects { writes: u32, chars: usize },
    /// The subjects do not fit the quota; nothing was written.
    TooLarge(Refusal),
    /// IAM (or the role's current document) failed us.
    Failed {
        /// The AWS error's `metric_label()`, or `unparseable_policy` / `invalid_role_arn`.
        label: &'static str,
        message: String,
        retryable: bool,
    },
}

impl Outcome {
    pub fn writes(&self) -> u32 {
        match self {
            Outcome::Applied { writes, .. } | Outcome::NoSubjects { writes, .. } => *writes,
            _ => 0,
        }
    }

    pub fn chars(&self) -> Option<usize> {
        match self {
            Outcome::Applied { chars, .. } | Outcome::NoSubjects { chars, .. } => Some(*chars),
            _ => None,
        }
    }

    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Applied { .. } | Outcome::NoSubjects { .. })
    }
}

/// One role's latest reconcile: what was wanted, and what happened.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleReport {
    pub role: String,
    /// Empty when the role could not be read (its tags are needed to authorize).
    pub desired: RoleDesired,
    /// False when `desired` was computed without the role's tags (the role was unreadable).
    pub authorized_with_tags: bool,
    pub outcome: Outcome,
    pub provider_arn: String,
    pub limit: usize,
    /// Increases with every report of the controller (ordering for waiters and tests).
    pub pass: u64,
}

impl RoleReport {
    /// Has this role been reconciled with `binding` at `generation` (or later)?
    pub fn saw(&self, binding: &Key, generation: i64) -> bool {
        self.desired
            .verdicts
            .get(binding)
            .is_some_and(|(g, _)| *g >= generation)
    }

    /// Has this role been reconciled with `association` at `generation` (or later)?
    pub fn saw_association(&self, association: &Key, generation: i64) -> bool {
        self.desired
            .association_verdicts
            .get(association)
            .is_some_and(|(g, _)| *g >= generation)
    }

    /// Does the role (as reconciled) trust subjects of `binding`?
    pub fn trusts_binding(&self, binding: &Key) -> bool {
        self.desired.bindings.contains_key(binding)
    }
}
