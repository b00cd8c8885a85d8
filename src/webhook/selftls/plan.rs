//! PURE: what the self-managed TLS loop should change, given what the Secret holds, what the
//! MutatingWebhookConfiguration trusts and the time. No I/O, no key generation: the caller
//! ([`super::material`]) carries the plan out.
//!
//! The rules, in the order they are applied:
//! 1. Expired CAs leave the bundle. With no CA left, a new one is created.
//! 2. The newest CA past 2/3 of its life gets a successor, added to the bundle at once. The
//!    serving certificate stays with its signer for now.
//! 3. The bundle counts as *published* from the first check that finds it in every webhook of
//!    the configuration; a CA only signs once the bundle holding it has been published for the
//!    overlap (the API server then trusts it; older CAs were published before it).
//! 4. The serving certificate is (re)issued by the newest trusted CA when it is missing, names
//!    other hosts, is past 2/3 of its life, was signed by a CA that left the bundle, or a newer
//!    CA has become trusted. With nothing trusted yet (first start, or every CA expired), the
//!    newest CA signs: there is nothing to overlap with.
//! 5. Every webhook entry whose caBundle is not the wanted bundle is set to it: after a change
//!    of the bundle that is a rotation, otherwise someone else changed it (a repair). Either
//!    way the bundle is published again from scratch.

use std::time::{Duration, SystemTime};

/// How long certificates live and how long a new CA is trusted before it signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub ca_validity: Duration,
    pub leaf_validity: Duration,
    pub overlap: Duration,
}

/// A certificate's validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// 2/3 into the window: renewing here leaves a third of the life to roll the new
    /// certificate out (every replica re-reads the Secret each check).
    pub fn renew_at(&self) -> SystemTime {
        let life = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_before + life / 3 * 2
    }

    pub fn expired(&self, now: SystemTime) -> bool {
        now >= self.not_after
    }
}

/// The serving certificate the Secret holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// Index into [`Current::cas`] of the CA whose key signed it; `None`: none of them.
    pub issuer: Option<usize>,
    pub validity: Validity,
    /// Its subject alternative names, normalised and sorted as [`Current::names`].
    pub names: Vec<String>,
}

/// What the planner looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// The CAs of the Secret's bundle, oldest first (each with its key).
    pub cas: Vec<Validity>,
    pub leaf: Option<Leaf>,
    /// Since when every webhook of the configuration has carried this bundle.
    pub published_since: Option<SystemTime>,
    /// Per webhook entry of the configuration: what its caBundle holds.
    pub webhooks: Vec<Bundle>,
    /// The names the serving certificate must carry, normalised and sorted.
    pub names: Vec<String>,
}

/// A webhook entry's caBundle, compared with the Secret's bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bundle {
    /// Exactly the Secret's bundle.
    Ours,
    /// None, or only some of the Secret's CAs: a configuration just created or rendered
    /// without one, or a rotation another replica is rolling out right now.
    Incomplete,
    /// A CA the Secret does not hold: someone else changed it.
    Foreign,
}

/// Which CA signs a new serving certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// A CA of [`Current::cas`], by index.
    Existing(usize),
    /// The CA this plan creates.
    New,
}

/// Why the serving certificate is reissued (the log says it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reissue {
    Missing,
    Names,
    Renew,
    SignerGone,
    NewerCa,
}

impl Reissue {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "no serving certificate yet",
            Self::Names => "the service names changed",
            Self::Renew => "two thirds of its validity passed",
            Self::SignerGone => "its CA left the bundle",
            Self::NewerCa => "a newer CA is trusted by now",
        }
    }
}

/// What to change; [`Plan::is_noop`] when nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Indices of the CAs that stay in the bundle, oldest first.
    pub keep: Vec<usize>,
    /// Create a CA and append it to the bundle.
    pub new_ca: bool,
    /// Issue a new serving certificate.
    pub issue: Option<(Signer, Reissue)>,
    /// The value to store; differs from [`Current::published_since`] when it must be written.
    pub published_since: Option<SystemTime>,
    /// Webhook entries (by index) whose caBundle must be set to the new bundle.
    pub patch: Vec<usize>,
    /// How many of [`Plan::patch`] are repairs: entries whose caBundle someone else changed
    /// (completing an incomplete one is none).
    pub repairs: usize,
}

impl Plan {
    /// Whether the bundle (the CA list) changes.
    pub fn bundle_changes(&self, current: &Current) -> bool {
        self.new_ca || self.keep.len() != current.cas.len()
    }

    /// Whether the Secret must be written.
    pub fn secret_changes(&self, current: &Current) -> bool {
        self.bundle_changes(current)
            || self.issue.is_some()
            || self.published_since != current.published_since
    }

    pub fn is_noop(&self, current: &Current) -> bool {
        !self.secret_changes(current) && self.patch.is_empty()
    }
}

pub fn plan(current: &Current, policy: &Policy, now: SystemTime) -> Plan {
    let keep: Vec<usize> = (0..current.cas.len())
        .filter(|&i| current.cas.get(i).is_some_and(|ca| !ca.expired(now)))
        .collect();
    let newest_kept = keep.last().and_then(|&i| current.cas.get(i));
    let new_ca = newest_kept.is_none_or(|ca| now >= ca.renew_at());
    let bundle_changes = new_ca || keep.len() != current.cas.len();

    // Which webhooks need the bundle, and whether it counts as published after this check.
    let patch: Vec<usize> = (0..current.webhooks.len())
        .filter(|&i| bundle_changes || current.webhooks.get(i) != Some(&Bundle::Ours))
        .collect();
    let repairs = if current.cas.is_empty() {
        // The first bundle: whatever the configuration trusted was not ours.
        0
    } else {
        current
            .webhooks
            .iter()
            .filter(|b| **b == Bundle::Foreign)
            .count()
    };
    let published_since = if patch.is_empty() && !current.webhooks.is_empty() {
        current.published_since.or(Some(now))
    } else {
        None
    };

    // The newest CA the API server trusts by now: every CA but the newest of the (new) bundle
    // was published before it; the newest once the bundle has been published for the overlap.
    let newest_trusted = published_since.is_some_and(|since| now >= since + policy.overlap);
    let signers: Vec<Signer> = keep
        .iter()
        .map(|&i| Signer::Existing(i))
        .chain(new_ca.then_some(Signer::New))
        .collect();
    let trusted = if newest_trusted {
        signers.last()
    } else {
        signers.iter().rev().nth(1)
    };
    let signer = trusted.or(signers.last()).copied();

    let reason = match &current.leaf {
        None => Some(Reissue::Missing),
        Some(leaf) => {
            let issuer = leaf.issuer.filter(|i| keep.contains(i));
            if issuer.is_none() {
                Some(Reissue::SignerGone)
            } else if leaf.names != current.names {
                Some(Reissue::Names)
            } else if now >= leaf.validity.renew_at() {
                Some(Reissue::Renew)
            } else if matches!(signer, Some(Signer::Existing(s)) if Some(s) > issuer) {
                Some(Reissue::NewerCa)
            } else {
                None
            }
        }
    };
    Plan {
        keep,
        new_ca,
        issue: reason.zip(signer).map(|(r, s)| (s, r)),
        published_since,
        patch,
        repairs,
    }
}

/// When the certificate of a CA or serving certificate created at `now` should end: the
/// serving certificate never outlives its CA.
pub fn leaf_not_after(policy: &Policy, now: SystemTime, ca: &Validity) -> SystemTime {
    (now + policy.leaf_validity).min(ca.not_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn window(from: u64, to: u64) -> Validity {
        Validity {
            not_before: t(from),
            not_after: t(to),
        }
    }

    fn policy() -> Policy {
        Policy {
            ca_validity: 300 * S,
            leaf_validity: 90 * S,
            overlap: 10 * S,
        }
    }

    fn names() -> Vec<String> {
        vec!["irsa-webhook.irsa-system.svc".into()]
    }

    /// A settled state at t=0..: one CA (0..300), a leaf (0..90) it signed, published at 0,
    /// two webhooks carrying the bundle.
    fn settled() -> Current {
        Current {
            cas: vec![window(0, 300)],
            leaf: Some(Leaf {
                issuer: Some(0),
                validity: window(0, 90),
                names: names(),
            }),
            published_since: Some(t(0)),
            webhooks: vec![Bundle::Ours, Bundle::Ours],
            names: names(),
        }
    }

    #[test]
    fn renewal_point_is_two_thirds_into_the_window() {
        assert_eq!(window(0, 90).renew_at(), t(60));
        assert!(!window(0, 90).expired(t(89)));
        assert!(window(0, 90).expired(t(90)));
    }

    #[test]
    fn first_start_creates_a_ca_and_a_certificate_it_signs_and_publishes_the_bundle() {
        let current = Current {
            cas: vec![],
            leaf: None,
            published_since: None,
            webhooks: vec![Bundle::Incomplete, Bundle::Incomplete, Bundle::Foreign],
            names: names(),
        };
        let p = plan(&current, &policy(), t(0));
        assert!(p.new_ca);
        assert_eq!(p.keep, Vec::<usize>::new());
        assert_eq!(p.issue, Some((Signer::New, Reissue::Missing)));
        assert_eq!(p.patch, vec![0, 1, 2]);
        assert_eq!(p.repairs, 0, "the first bundle is no repair");
        assert_eq!(p.published_since, None);
    }

    #[test]
    fn a_settled_state_needs_nothing() {
        let current = settled();
        let p = plan(&current, &policy(), t(30));
        assert!(p.is_noop(&current), "{p:?}");
    }

    #[test]
    fn the_first_check_that_finds_the_bundle_everywhere_records_it_as_published() {
        let mut current = settled();
        current.published_since = None;
        let p = plan(&current, &policy(), t(5));
        assert_eq!(p.published_since, Some(t(5)));
        assert!(p.secret_changes(&current) && p.patch.is_empty() && p.issue.is_none());
    }

    #[test]
    fn without_a_configuration_nothing_counts_as_published() {
        let mut current = settled();
        current.webhooks = vec![];
        current.published_since = None;
        let p = plan(&current, &policy(), t(5));
        assert!(p.is_noop(&current), "{p:?}");
    }

    #[test]
    fn a_changed_ca_bundle_is_repaired_and_counted() {
        let mut current = settled();
        current.webhooks = vec![Bundle::Ours, Bundle::Foreign, Bundle::Incomplete];
        let p = plan(&current, &policy(), t(30));
        assert_eq!(p.patch, vec![1, 2]);
        assert_eq!(p.repairs, 1, "an incomplete caBundle is set, not repaired");
        assert!(!p.new_ca && p.issue.is_none());
        assert_eq!(
            p.published_since, None,
            "published again from the repair on"
        );
    }

    #[test]
    fn the_serving_certificate_is_renewed_at_two_thirds_of_its_life_by_the_same_ca() {
        let current = settled();
        assert_eq!(plan(&current, &policy(), t(59)).issue, None);
        let p = plan(&current, &policy(), t(60));
        assert_eq!(p.issue, Some((Signer::Existing(0), Reissue::Renew)));
        assert!(!p.bundle_changes(&current) && p.patch.is_empty());
    }

    #[test]
    fn changed_service_names_reissue_the_certificate() {
        let mut current = settled();
        current
            .names
            .push("irsa-webhook.irsa-system.svc.cluster.local".into());
        let p = plan(&current, &policy(), t(10));
        assert_eq!(p.issue, Some((Signer::Existing(0), Reissue::Names)));
    }

    #[test]
    fn a_certificate_no_kept_ca_signed_is_replaced() {
        let mut current = settled();
        if let Some(leaf) = &mut current.leaf {
            leaf.issuer = None;
        }
        let p = plan(&current, &policy(), t(10));
        assert_eq!(p.issue, Some((Signer::Existing(0), Reissue::SignerGone)));
    }

    #[test]
    fn ca_rotation_adds_the_new_ca_first_and_switches_only_after_the_overlap() {
        let policy = policy();
        // 2/3 of the CA's 300s: a successor joins the bundle, the leaf stays with CA 0.
        let mut current = settled();
        current.leaf = Some(Leaf {
            issuer: Some(0),
            validity: window(180, 270),
            names: names(),
        });
        let p = plan(&current, &policy, t(200));
        assert!(p.new_ca);
        assert_eq!(p.keep, vec![0]);
        assert_eq!(p.issue, None, "the new CA is not trusted yet");
        assert_eq!(p.patch, vec![0, 1], "both webhooks get the bigger bundle");
        assert_eq!(p.repairs, 0, "a rotation is not a repair");
        assert_eq!(p.published_since, None);

        // Next check: bundle [0, 1] everywhere: published now, still not trusted.
        current.cas.push(window(200, 500));
        current.published_since = None;
        let p = plan(&current, &policy, t(201));
        assert!(!p.new_ca);
        assert_eq!(p.published_since, Some(t(201)));
        assert_eq!(p.issue, None);

        // A renewal inside the overlap is still signed by the old CA.
        current.published_since = Some(t(201));
        current.leaf = Some(Leaf {
            issuer: Some(0),
            validity: window(150, 240),
            names: names(),
        });
        let p = plan(&current, &policy, t(210));
        assert_eq!(p.issue, Some((Signer::Existing(0), Reissue::Renew)));

        // After the overlap the new CA signs.
        let p = plan(&current, &policy, t(211));
        assert_eq!(p.issue, Some((Signer::Existing(1), Reissue::Renew)));
        current.leaf = Some(Leaf {
            issuer: Some(0),
            validity: window(200, 290),
            names: names(),
        });
        let p = plan(&current, &policy, t(211));
        assert_eq!(p.issue, Some((Signer::Existing(1), Reissue::NewerCa)));
    }

    #[test]
    fn a_repair_during_the_overlap_restarts_it() {
        let mut current = settled();
        current.cas.push(window(200, 500));
        current.leaf = Some(Leaf {
            issuer: Some(0),
            validity: window(200, 290),
            names: names(),
        });
        current.published_since = Some(t(201));
        current.webhooks = vec![Bundle::Foreign, Bundle::Ours];
        let p = plan(&current, &policy(), t(250));
        assert_eq!(p.patch, vec![0]);
        assert_eq!(p.published_since, None);
        assert_eq!(p.issue, None, "the new CA waits for a fresh overlap");
    }

    #[test]
    fn expired_cas_leave_the_bundle_and_their_certificates_are_replaced() {
        let mut current = settled();
        current.cas.push(window(200, 500));
        current.published_since = Some(t(201));
        let p = plan(&current, &policy(), t(300));
        assert_eq!(p.keep, vec![1]);
        assert!(!p.new_ca);
        assert_eq!(p.patch, vec![0, 1]);
        assert_eq!(p.published_since, None);
        // The leaf's CA left; the remaining CA was published before this bundle: it signs.
        assert_eq!(p.issue, Some((Signer::Existing(1), Reissue::SignerGone)));
    }

    #[test]
    fn with_every_ca_expired_a_new_one_signs_at_once() {
        let current = settled();
        let p = plan(&current, &policy(), t(400));
        assert!(p.new_ca);
        assert_eq!(p.keep, Vec::<usize>::new());
        assert_eq!(p.issue, Some((Signer::New, Reissue::SignerGone)));
    }

    #[test]
    fn a_serving_certificate_never_outlives_its_ca() {
        let ca = window(0, 300);
        assert_eq!(leaf_not_after(&policy(), t(100), &ca), t(190));
        assert_eq!(leaf_not_after(&policy(), t(250), &ca), t(300));
    }
}
