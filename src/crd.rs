//! IAMRoleBinding / IAMRoleGrant custom resources.
