//! The latest report of every role, written by the worker and read by the binding reconciler
//! and the watches (which roles trust a ServiceAccount, which audiences are in use).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use crate::controller::policy::desired::Key;
use crate::controller::policy::report::RoleReport;

/// The latest report of every role, shared with the binding reconciler.
#[derive(Debug, Default)]
pub struct RoleState {
    reports: RwLock<BTreeMap<String, Arc<RoleReport>>>,
}

impl RoleState {
    pub fn get(&self, role: &str) -> Option<Arc<RoleReport>> {
        self.reports.read().ok()?.get(role).cloned()
    }

    pub fn roles(&self) -> BTreeSet<String> {
        self.reports
            .read()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Every audience the roles' last reconciles trust (authorized subjects only).
    pub fn audiences(&self) -> BTreeSet<String> {
        self.reports
            .read()
            .map(|r| {
                r.values()
                    .flat_map(|rep| rep.desired.audiences().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Roles whose last reconcile trusted the annotated ServiceAccount `sa`.
    pub fn roles_trusting_sa(&self, sa: &Key) -> Vec<String> {
        self.roles_whose_report(|rep| rep.desired.service_accounts.contains(sa))
    }

    /// Roles whose last reconcile decided on the association `key` (its role before a
    /// `roleArn` change, or before it was deleted, among them).
    pub fn roles_with_association(&self, key: &Key) -> Vec<String> {
        self.roles_whose_report(|rep| rep.desired.association_verdicts.contains_key(key))
    }

    fn roles_whose_report(&self, matches: impl Fn(&RoleReport) -> bool) -> Vec<String> {
        self.reports
            .read()
            .map(|r| {
                r.values()
                    .filter(|rep| matches(rep))
                    .map(|rep| rep.role.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records `report` as the role's latest (the worker does this after every reconcile).
    pub fn put(&self, report: Arc<RoleReport>) {
        // Kept even when nothing refers to the role any more: the binding reconciler reads
        // "cleaned" from it after a roleArn move, and resync keeps checking the role (one
        // GetRole per interval) so a hand edit re-adding our statement is still repaired.
        if let Ok(mut r) = self.reports.write() {
            r.insert(report.role.clone(), report);
        }
    }
}
