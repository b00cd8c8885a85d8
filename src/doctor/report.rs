//! PURE: the doctor's checklist and how it is printed (text for people, JSON for machines).

use std::fmt::Write as _;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    Fail,
    Warn,
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Warn => "WARN",
            Status::Skip => "SKIP",
        }
    }

    /// ANSI colour of the label on a terminal.
    fn colour(self) -> &'static str {
        match self {
            Status::Pass => "\x1b[32m",
            Status::Fail => "\x1b[31m",
            Status::Warn => "\x1b[33m",
            Status::Skip => "\x1b[2m",
        }
    }
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// Stable machine name: `service-account`, `binding`, `role`, `trust-policy`,
    /// `oidc-provider`, `issuer`, `issuer-keys`, `token`, `assume`, `pod`.
    pub id: &'static str,
    pub title: &'static str,
    pub status: Status,
    /// One line of what was seen.
    pub evidence: String,
    /// What to do about a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The error the pod's AWS SDK gets from STS because of this failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sts_error: Option<String>,
}

impl Check {
    pub fn pass(id: &'static str, title: &'static str, evidence: impl Into<String>) -> Self {
        Self::new(id, title, Status::Pass, evidence)
    }

    pub fn warn(id: &'static str, title: &'static str, evidence: impl Into<String>) -> Self {
        Self::new(id, title, Status::Warn, evidence)
    }

    pub fn skip(id: &'static str, title: &'static str, evidence: impl Into<String>) -> Self {
        Self::new(id, title, Status::Skip, evidence)
    }

    pub fn fail(
        id: &'static str,
        title: &'static str,
        evidence: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            fix: Some(fix.into()),
            ..Self::new(id, title, Status::Fail, evidence)
        }
    }

    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    pub fn with_sts_error(mut self, error: impl Into<String>) -> Self {
        self.sts_error = Some(error.into());
        self
    }

    fn new(
        id: &'static str,
        title: &'static str,
        status: Status,
        evidence: impl Into<String>,
    ) -> Self {
        Self {
            id,
            title,
            status,
            evidence: evidence.into(),
            fix: None,
            sts_error: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// What was diagnosed, e.g. `ServiceAccount team-a/app`.
    pub subject: String,
    /// The role checked, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    pub checks: Vec<Check>,
    pub ok: bool,
}

impl Report {
    pub fn new(subject: String, role_arn: Option<String>, checks: Vec<Check>) -> Self {
        let ok = checks.iter().all(|c| c.status != Status::Fail);
        Self {
            subject,
            role_arn,
            checks,
            ok,
        }
    }

    pub fn failures(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count()
    }

    pub fn render_text(&self, colour: bool) -> String {
        let paint = |status: Status| {
            if colour {
                format!("{}{:<4}\x1b[0m", status.colour(), status.label())
            } else {
                format!("{:<4}", status.label())
            }
        };
        let mut out = String::new();
        let target = self
            .role_arn
            .as_deref()
            .map(|r| format!(" -> {r}"))
            .unwrap_or_default();
        // Writing to a String cannot fail.
        let _ = writeln!(out, "irsa doctor: {}{target}\n", self.subject);
        let width = self.checks.iter().map(|c| c.title.len()).max().unwrap_or(0);
        for (i, check) in self.checks.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {} {:>2}. {:<width$}  {}",
                paint(check.status),
                i + 1,
                check.title,
                check.evidence
            );
            let indent = " ".repeat(width + 12);
            if let Some(fix) = &check.fix {
                let _ = writeln!(out, "{indent}fix: {fix}");
            }
            if let Some(err) = &check.sts_error {
                let _ = writeln!(out, "{indent}the pod gets: {err}");
            }
        }
        let _ = writeln!(out);
        match self.failures() {
            0 => {
                let _ = writeln!(out, "All checks passed.");
            }
            n => {
                let _ = writeln!(
                    out,
                    "{n} check{} failed: the pod cannot assume {}.",
                    if n == 1 { "" } else { "s" },
                    self.role_arn.as_deref().unwrap_or("its role")
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_decide_ok_and_warnings_do_not() {
        let r = Report::new(
            "ServiceAccount a/b".into(),
            None,
            vec![Check::pass("a", "A", "fine"), Check::warn("b", "B", "meh")],
        );
        assert!(r.ok);
        let r = Report::new(
            "x".into(),
            None,
            vec![Check::fail("a", "A", "bad", "fix it")],
        );
        assert!(!r.ok);
        assert_eq!(r.failures(), 1);
    }

    #[test]
    fn colour_only_when_asked() {
        let r = Report::new("x".into(), None, vec![Check::pass("a", "A", "fine")]);
        assert!(!r.render_text(false).contains('\x1b'));
        assert!(r.render_text(true).contains("\x1b[32mPASS\x1b[0m"));
    }

    #[test]
    fn json_shape_is_stable() {
        let r = Report::new(
            "ServiceAccount a/b".into(),
            Some("arn:aws:iam::111122223333:role/r".into()),
            vec![
                Check::fail("token", "Token", "expired", "restart the pod")
                    .with_sts_error("ExpiredToken"),
            ],
        );
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({
                "subject": "ServiceAccount a/b",
                "roleArn": "arn:aws:iam::111122223333:role/r",
                "checks": [{"id": "token", "title": "Token", "status": "FAIL", "evidence": "expired",
                            "fix": "restart the pod", "stsError": "ExpiredToken"}],
                "ok": false,
            })
        );
    }
}
