//! The Secret's certificates and keys: read into what [`super::plan`] looks at, and a plan
//! carried out (keys generated, certificates signed) into the Secret's new data. No I/O.
//!
//! The Secret's keys: `tls.crt`/`tls.key` (the serving pair), `ca.crt` (the PEM bundle of
//! trusted CAs, oldest first: exactly what every caBundle carries) and `ca.key` (their private
//! keys in the same order). The time the bundle was first seen published is an annotation.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, SystemTime},
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use x509_parser::{certificate::X509Certificate, extensions::GeneralName};

use super::plan::{self, Bundle, Current, Leaf, Plan, Policy, Signer, Validity};

pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const CA_CRT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
/// When every webhook of the configuration was first seen carrying `ca.crt` (RFC 3339).
pub const PUBLISHED_ANNOTATION: &str = "irsa.dev/ca-bundle-published-at";

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("cannot create a key or certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("the plan names a CA that is not in the Secret: {0:?}")]
    UnknownSigner(Signer),
}

/// One CA of the bundle, with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
    pub validity: Validity,
}

/// The serving pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serving {
    pub cert_pem: String,
    pub key_pem: String,
    pub leaf: Leaf,
}

/// Everything the Secret holds, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Material {
    pub cas: Vec<Ca>,
    pub serving: Option<Serving>,
    pub published_since: Option<SystemTime>,
}

/// Names as the planner compares them: IP addresses in canonical form, DNS names in lower
/// case; sorted, without duplicates.
pub fn normalise_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = names
        .into_iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => n.to_ascii_lowercase(),
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

impl Material {
    /// Reads the Secret's data; what does not parse is left out (and named in the returned
    /// problems), so the plan replaces it.
    pub fn from_secret(
        data: &BTreeMap<String, Vec<u8>>,
        published: Option<&str>,
    ) -> (Self, Vec<String>) {
        let mut problems = Vec::new();
        let cas = match read_cas(data) {
            Ok(cas) => cas,
            Err(problem) => {
                problems.push(problem);
                Vec::new()
            }
        };
        let serving = match (data.get(TLS_CRT), data.get(TLS_KEY)) {
            (Some(cert), Some(key)) => match read_serving(cert, key, &cas) {
                Ok(serving) => Some(serving),
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            },
            _ => None,
        };
        let published_since = published.and_then(|p| match humantime::parse_rfc3339(p) {
            Ok(t) => Some(t),
            Err(e) => {
                problems.push(format!("annotation {PUBLISHED_ANNOTATION}={p:?}: {e}"));
                None
            }
        });
        (
            Self {
                cas,
                serving,
                published_since,
            },
            problems,
        )
    }

    /// `ca.crt`: what every caBundle must carry.
    pub fn bundle(&self) -> String {
        self.cas.iter().map(|ca| ca.cert_pem.as_str()).collect()
    }

    /// The Secret's data.
    pub fn to_data(&self) -> BTreeMap<String, Vec<u8>> {
        let mut data = BTreeMap::new();
        data.insert(CA_CRT.to_string(), self.bundle().into_bytes());
        let keys: String = self.cas.iter().map(|ca| ca.key_pem.as_str()).collect();
        data.insert(CA_KEY.to_string(), keys.into_bytes());
        if let Some(serving) = &self.serving {
            data.insert(TLS_CRT.to_string(), serving.cert_pem.clone().into_bytes());
            data.insert(TLS_KEY.to_string(), serving.key_pem.clone().into_bytes());
        }
        data
    }

    /// The annotation's value.
    pub fn published_annotation(&self) -> Option<String> {
        self.published_since
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
    }

    /// What the planner looks at; `webhooks`: each webhook entry's caBundle.
    pub fn current(
        &self,
        webhooks: &[Option<Vec<u8>>],
        names: &[String],
        now: SystemTime,
    ) -> Current {
        let bundle = self.bundle();
        Current {
            cas: self.cas.iter().map(|ca| ca.validity).collect(),
            leaf: self.serving.as_ref().map(|s| s.leaf.clone()),
            published_since: self.published_since,
            webhooks: webhooks
                .iter()
                .map(|b| compare(b.as_deref().unwrap_or_default(), &bundle, now))
                .collect(),
            names: names.to_vec(),
        }
    }

    /// The material after `plan`: new keys and certificates as it says, valid from `now`.
    pub fn apply(
        &self,
        plan: &Plan,
        policy: &Policy,
        names: &[String],
        now: SystemTime,
    ) -> Result<Self, IssueError> {
        let mut cas: Vec<Ca> = plan
            .keep
            .iter()
            .filter_map(|&i| self.cas.get(i).cloned())
            .collect();
        let new_ca = if plan.new_ca {
            let ca = issue_ca(policy, now)?;
            cas.push(ca.clone());
            Some(ca)
        } else {
            None
        };
        let serving = match plan.issue {
            None => self.serving.clone().map(|mut s| {
                // Indices move when older CAs leave the bundle.
                s.leaf.issuer = s
                    .leaf
                    .issuer
                    .and_then(|old| self.cas.get(old))
                    .and_then(|ca| cas.iter().position(|c| c == ca));
                s
            }),
            Some((signer, _)) => {
                let ca = match signer {
                    Signer::New => new_ca.as_ref(),
                    Signer::Existing(i) => self.cas.get(i),
                }
                .ok_or(IssueError::UnknownSigner(signer))?;
                let index = cas.iter().position(|c| c == ca);
                Some(issue_serving(ca, index, policy, names, now)?)
            }
        };
        Ok(Self {
            cas,
            serving,
            published_since: plan.published_since,
        })
    }
}

/// A webhook's caBundle against ours (both PEM) at `now`: equal; incomplete (nothing but our
/// CAs and expired ones, as when another replica is rolling a change out); or holding a live
/// CA that is not ours.
fn compare(theirs: &[u8], ours: &str, now: SystemTime) -> Bundle {
    if !ours.is_empty() && theirs == ours.as_bytes() {
        return Bundle::Ours;
    }
    let ours: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(ours.as_bytes())
        .flatten()
        .collect();
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(theirs).collect();
    match certs {
        // Text that is no certificate at all (PEM parsing skips it) is not ours either.
        Ok(certs) if certs.is_empty() && theirs.iter().any(|b| !b.is_ascii_whitespace()) => {
            Bundle::Foreign
        }
        Ok(certs)
            if certs
                .iter()
                .all(|c| ours.contains(c) || read_validity(c).is_some_and(|v| v.expired(now))) =>
        {
            Bundle::Incomplete
        }
        _ => Bundle::Foreign,
    }
}

/// Certificates and keys are backdated a little so that a clock slightly behind ours (the
/// API server's) already accepts them; a tenth of a short validity at most.
fn backdate(validity: Duration) -> Duration {
    (validity / 10).min(Duration::from_secs(60))
}

fn offset(t: SystemTime) -> time::OffsetDateTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn unix(secs: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

fn issue_ca(policy: &Policy, now: SystemTime) -> Result<Ca, rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    // A distinct name per CA: verifiers pick candidate issuers by subject first.
    let serial = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    params
        .distinguished_name
        .push(DnType::CommonName, format!("irsa-webhook-ca-{serial}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let validity = Validity {
        not_before: now - backdate(policy.ca_validity),
        not_after: now + policy.ca_validity,
    };
    params.not_before = offset(validity.not_before);
    params.not_after = offset(validity.not_after);
    let cert = params.self_signed(&key)?;
    Ok(Ca {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        validity: read_validity(cert.der()).unwrap_or(validity),
    })
}

fn issue_serving(
    ca: &Ca,
    issuer_index: Option<usize>,
    policy: &Policy,
    names: &[String],
    now: SystemTime,
) -> Result<Serving, rcgen::Error> {
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, KeyPair::from_pem(&ca.key_pem)?)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    if let Some(first) = names.first() {
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, first);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let not_before = now - backdate(policy.leaf_validity);
    params.not_before = offset(not_before);
    params.not_after = offset(plan::leaf_not_after(policy, now, &ca.validity));
    let cert = params.signed_by(&key, &issuer)?;
    let validity = read_validity(cert.der()).ok_or(rcgen::Error::CouldNotParseCertificate)?;
    Ok(Serving {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        leaf: Leaf {
            issuer: issuer_index,
            validity,
            names: names.to_vec(),
        },
    })
}

fn parse_x509<'a>(der: &'a CertificateDer<'_>) -> Option<X509Certificate<'a>> {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .map(|(_, cert)| cert)
}

fn validity_of(cert: &X509Certificate<'_>) -> Validity {
    Validity {
        not_before: unix(cert.validity().not_before.timestamp()),
        not_after: unix(cert.validity().not_after.timestamp()),
    }
}

fn read_validity(der: &CertificateDer<'_>) -> Option<Validity> {
    parse_x509(der).map(|c| validity_of(&c))
}

/// PEM of a DER certificate, as rcgen writes it.
fn cert_pem(der: &CertificateDer<'_>) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

fn read_cas(data: &BTreeMap<String, Vec<u8>>) -> Result<Vec<Ca>, String> {
    let (Some(raw_certs), Some(keys)) = (data.get(CA_CRT), data.get(CA_KEY)) else {
        return Ok(Vec::new());
    };
    let certs = CertificateDer::pem_slice_iter(raw_certs)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{CA_CRT} is not valid PEM: {e}"))?;
    if certs.is_empty() && raw_certs.iter().any(|b| !b.is_ascii_whitespace()) {
        return Err(format!("{CA_CRT} holds no PEM certificate"));
    }
    let keys = PrivateKeyDer::pem_slice_iter(keys)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{CA_KEY} is not valid PEM: {e}"))?;
    if certs.len() != keys.len() {
        return Err(format!(
            "{CA_CRT} holds {} certificates but {CA_KEY} {} keys",
            certs.len(),
            keys.len()
        ));
    }
    certs
        .iter()
        .zip(&keys)
        .enumerate()
        .map(|(i, (cert, key))| {
            let parsed = parse_x509(cert).ok_or(format!("CA #{i} of {CA_CRT} is not X.509"))?;
            let key = KeyPair::try_from(key).map_err(|e| format!("key #{i} of {CA_KEY}: {e}"))?;
            if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
                return Err(format!("key #{i} of {CA_KEY} does not match CA #{i}"));
            }
            Ok(Ca {
                cert_pem: cert_pem(cert),
                key_pem: key.serialize_pem(),
                validity: validity_of(&parsed),
            })
        })
        .collect()
}

fn read_serving(cert: &[u8], key: &[u8], cas: &[Ca]) -> Result<Serving, String> {
    let der = CertificateDer::from_pem_slice(cert)
        .map_err(|e| format!("{TLS_CRT} is not a PEM certificate: {e}"))?;
    let parsed = parse_x509(&der).ok_or(format!("{TLS_CRT} is not X.509"))?;
    let key_der =
        PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("{TLS_KEY} is not PEM: {e}"))?;
    let pair = KeyPair::try_from(&key_der).map_err(|e| format!("{TLS_KEY}: {e}"))?;
    if parsed.public_key().subject_public_key.data.as_ref() != pair.public_key_raw() {
        return Err(format!("{TLS_KEY} does not match {TLS_CRT}"));
    }
    let issuer = cas.iter().position(|ca| {
        CertificateDer::from_pem_slice(ca.cert_pem.as_bytes())
            .ok()
            .and_then(|ca_der| {
                let ca = parse_x509(&ca_der)?;
                parsed.verify_signature(Some(ca.public_key())).ok()
            })
            .is_some()
    });
    let names = parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some((*d).to_string()),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => <[u8; 4]>::try_from(*b)
                            .ok()
                            .map(|o| IpAddr::from(o).to_string()),
                        16 => <[u8; 16]>::try_from(*b)
                            .ok()
                            .map(|o| IpAddr::from(o).to_string()),
                        _ => None,
                    },
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    Ok(Serving {
        cert_pem: String::from_utf8_lossy(cert).into_owned(),
        key_pem: String::from_utf8_lossy(key).into_owned(),
        leaf: Leaf {
            issuer,
            validity: validity_of(&parsed),
            names: normalise_names(names.iter().map(String::as_str)),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::selftls::plan::{Reissue, plan};

    fn policy() -> Policy {
        Policy {
            ca_validity: Duration::from_secs(3000),
            leaf_validity: Duration::from_secs(900),
            overlap: Duration::from_secs(10),
        }
    }

    fn names() -> Vec<String> {
        normalise_names(["irsa-webhook.irsa-system.svc", "127.0.0.1", "LOCALHOST"])
    }

    /// A first CA and serving certificate, as the first plan at `now` makes them.
    fn first_material(now: SystemTime) -> Material {
        let empty = Material::default();
        let first = plan(&empty.current(&[], &names(), now), &policy(), now);
        empty.apply(&first, &policy(), &names(), now).unwrap()
    }

    /// What the Secret holds after writing `m` and reading it back.
    fn round_trip(m: &Material) -> Material {
        let (read, problems) = Material::from_secret(&m.to_data(), None);
        assert_eq!(problems, Vec::<String>::new());
        read
    }

    #[test]
    fn names_are_compared_normalised() {
        assert_eq!(
            names(),
            vec!["127.0.0.1", "irsa-webhook.irsa-system.svc", "localhost"]
        );
    }

    #[test]
    fn a_first_plan_carried_out_reads_back_as_the_same_state() {
        let now = SystemTime::now();
        let empty = Material::default();
        let current = empty.current(&[None], &names(), now);
        let p = plan(&current, &policy(), now);
        let made = empty.apply(&p, &policy(), &names(), now).unwrap();
        assert_eq!(made.cas.len(), 1);
        let read = round_trip(&made);
        let serving = read.serving.as_ref().unwrap();
        assert_eq!(
            serving.leaf.issuer,
            Some(0),
            "the leaf verifies against the CA"
        );
        assert_eq!(serving.leaf.names, names());
        assert!(serving.leaf.validity.not_after <= read.cas[0].validity.not_after);

        // Published on every webhook: nothing more to do.
        let bundle = Some(read.bundle().into_bytes());
        let current = read.current(&[bundle], &names(), now);
        assert_eq!(current.webhooks, vec![Bundle::Ours]);
        let p = plan(&current, &policy(), now);
        assert_eq!(p.issue, None);
        assert_eq!(p.published_since, Some(now));
    }

    #[test]
    fn after_a_ca_rotation_the_leaf_is_signed_by_the_new_ca_and_both_are_trusted() {
        let t0 = SystemTime::now();
        let first = first_material(t0);
        // 2/3 into the CA's life: a successor.
        let t1 = t0 + Duration::from_secs(2100);
        let current = first.current(&[Some(first.bundle().into_bytes())], &names(), t1);
        let p = plan(&current, &policy(), t1);
        assert!(p.new_ca);
        let second = round_trip(&first.apply(&p, &policy(), &names(), t1).unwrap());
        assert_eq!(second.cas.len(), 2);
        assert_eq!(second.serving.as_ref().unwrap().leaf.issuer, Some(0));

        // Published, and past the overlap: the new CA signs.
        let mut published = second.clone();
        published.published_since = Some(t1);
        let t2 = t1 + Duration::from_secs(11);
        let current = published.current(&[Some(published.bundle().into_bytes())], &names(), t2);
        let p = plan(&current, &policy(), t2);
        assert_eq!(p.issue, Some((Signer::Existing(1), Reissue::NewerCa)));
        let third = round_trip(&published.apply(&p, &policy(), &names(), t2).unwrap());
        assert_eq!(third.serving.as_ref().unwrap().leaf.issuer, Some(1));
        assert_eq!(third.bundle(), second.bundle(), "the bundle is unchanged");
    }

    #[test]
    fn a_ca_bundle_is_ours_incomplete_or_foreign() {
        let now = SystemTime::now();
        let one = first_material(now);
        let mut two = one.clone();
        two.cas.push(issue_ca(&policy(), now).unwrap());
        assert_eq!(
            compare(two.bundle().as_bytes(), &two.bundle(), now),
            Bundle::Ours
        );
        assert_eq!(compare(b"", &two.bundle(), now), Bundle::Incomplete);
        // Another replica's rotation in flight: the old bundle, a part of the new one.
        assert_eq!(
            compare(one.bundle().as_bytes(), &two.bundle(), now),
            Bundle::Incomplete
        );
        // After the old CA left ours, a bundle still holding it is not ours.
        let newest = Material {
            cas: two.cas[1..].to_vec(),
            ..Material::default()
        };
        assert_eq!(
            compare(two.bundle().as_bytes(), &newest.bundle(), now),
            Bundle::Foreign
        );
        // ... unless that CA has expired (another replica dropping it right now).
        let later = now + Duration::from_secs(3001);
        assert_eq!(
            compare(two.bundle().as_bytes(), &newest.bundle(), later),
            Bundle::Incomplete
        );
        assert_eq!(compare(b"garbage", &two.bundle(), now), Bundle::Foreign);
        assert_eq!(compare(b"x", "", now), Bundle::Foreign);
    }

    #[test]
    fn broken_contents_are_named_and_left_out() {
        let mut data = BTreeMap::new();
        data.insert(CA_CRT.to_string(), b"not pem".to_vec());
        data.insert(CA_KEY.to_string(), b"".to_vec());
        data.insert(TLS_CRT.to_string(), b"x".to_vec());
        data.insert(TLS_KEY.to_string(), b"y".to_vec());
        let (m, problems) = Material::from_secret(&data, Some("yesterday"));
        assert_eq!(m, Material::default());
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
