//! The doctor's sequence: fetch each fact, hand it to its pure check, and keep going where a
//! later step can still say something useful (a missing provider does not hide a bad token).

use aws_config::SdkConfig;
use kube::Client;

use super::{
    checks,
    report::{Check, Report, Status},
    sources, webhook,
};
use crate::{
    arn::RoleArn,
    aws::{Aws, ProviderLookup},
    issuer::{IssuerUrl, discover},
    mutate::{self, Identities, MutationConfig, ServiceAccountInfo},
};

/// What to diagnose.
#[derive(Debug, Clone)]
pub enum Target {
    ServiceAccount {
        namespace: String,
        name: String,
    },
    Pod {
        namespace: String,
        name: String,
    },
    /// Offline: a token (its contents) against a role, optionally with the trust policy text
    /// and where it came from (then IAM is not asked at all).
    Token {
        token: String,
        role_arn: String,
        trust_policy: Option<(String, String)>,
    },
}

#[derive(Debug, Clone)]
pub struct Options {
    pub annotation_prefix: String,
    pub default_audience: String,
    pub issuer_url: Option<IssuerUrl>,
    pub assume: bool,
    /// Where irsa controller runs: its issuer publisher's status explains a stale JWKS.
    pub irsa_namespace: String,
    /// The publisher's state ConfigMap there (the controller's `--issuer-state-configmap`).
    pub issuer_state_configmap: String,
    /// `--webhook-configuration`: check that webhook and dry-run a pod through it.
    pub webhook_configuration: Option<String>,
    /// Pod Identity: ask the agent at this URL for the pod's credentials.
    pub agent_url: Option<String>,
    /// Pod Identity: the agent's role (default: read from the agent's pod).
    pub agent_role_arn: Option<String>,
    /// Pod Identity: the `irsa-cluster-name` tag (default: read from the agent's pod).
    pub cluster_name: Option<String>,
    /// Pod Identity: the audience of the token the doctor asks the agent with.
    pub pod_identity_audience: String,
}

/// The outside world the doctor reads from. `kube` is needed for every target but `Token`;
/// `aws` for everything IAM unless a trust policy file replaces it.
pub struct Env {
    pub kube: Option<Client>,
    pub aws: Option<SdkConfig>,
    pub http: reqwest::Client,
    /// Seconds since the epoch (injectable for expiry tests).
    pub now: i64,
}

/// What every target resolves to before the IAM and token steps.
struct Subject {
    role_arn: RoleArn,
    sub: String,
    audience: String,
    token: Result<String, String>,
}

pub async fn diagnose(env: &Env, target: &Target, opts: &Options) -> Report {
    if let Some(report) = super::pod_identity::diagnose(env, target, opts).await {
        return report;
    }
    let mut checks = Vec::new();
    // The webhook steps come last: they are about pods created from now on.
    let mut webhook_checks = Vec::new();
    let (subject_label, subject) = match target {
        Target::Token {
            token, role_arn, ..
        } => (
            "token".to_string(),
            offline_subject(token, role_arn, &mut checks),
        ),
        Target::ServiceAccount { namespace, name } => (
            format!("ServiceAccount {namespace}/{name}"),
            cluster_subject(
                env,
                namespace,
                name,
                None,
                opts,
                &mut checks,
                &mut webhook_checks,
            )
            .await,
        ),
        Target::Pod { namespace, name } => (
            format!("Pod {namespace}/{name}"),
            pod_subject(env, namespace, name, opts, &mut checks, &mut webhook_checks).await,
        ),
    };
    let role = subject.as_ref().map(|s| s.role_arn.to_string());
    match subject {
        Some(subject) => {
            let trust_file = match target {
                Target::Token { trust_policy, .. } => trust_policy.as_ref(),
                _ => None,
            };
            aws_and_token_steps(env, opts, &subject, trust_file, &mut checks).await;
        }
        None => {
            for (id, title) in LATER_STEPS {
                checks.push(Check::skip(
                    id,
                    title,
                    "needs a ServiceAccount with a valid role",
                ));
            }
        }
    }
    checks.extend(webhook_checks);
    Report::new(subject_label, role, checks)
}

const LATER_STEPS: [(&str, &str); 8] = [
    ("binding", "IAMRoleBinding"),
    ("role", "IAM role"),
    ("trust-policy", "Trust policy"),
    ("oidc-provider", "OIDC provider"),
    ("issuer", "Issuer discovery"),
    (checks::KEYS_ID, checks::KEYS_TITLE),
    ("token", "Token"),
    ("assume", "AssumeRole"),
];

fn offline_subject(token: &str, role_arn: &str, checks: &mut Vec<Check>) -> Option<Subject> {
    let claims = checks::peek(token);
    let role = RoleArn::parse(role_arn);
    let (check, subject) = match (&claims, role) {
        (Ok((c, _)), Ok(role_arn)) => (
            Check::skip(
                "service-account",
                "ServiceAccount",
                format!(
                    "offline: checking a token with sub {} and aud {:?}",
                    c.sub, c.aud
                ),
            ),
            Some(Subject {
                role_arn,
                sub: c.sub.clone(),
                audience: c.aud.first().cloned().unwrap_or_default(),
                token: Ok(token.to_string()),
            }),
        ),
        (Err(err), _) => (
            Check::fail(
                "service-account",
                "ServiceAccount",
                format!("the token file: {err}"),
                "pass a service-account token (kubectl create token -n NS SA)",
            ),
            None,
        ),
        (_, Err(err)) => (
            Check::fail(
                "service-account",
                "ServiceAccount",
                format!("--role-arn {role_arn:?}: {err}"),
                "pass arn:<partition>:iam::<account>:role/<name>",
            ),
            None,
        ),
    };
    checks.push(check);
    if subject.is_some() {
        checks.push(Check::skip(
            "binding",
            "IAMRoleBinding",
            "offline: no cluster consulted",
        ));
    }
    subject
}

async fn pod_subject(
    env: &Env,
    namespace: &str,
    name: &str,
    opts: &Options,
    checks: &mut Vec<Check>,
    webhook_checks: &mut Vec<Check>,
) -> Option<Subject> {
    let Some(kube) = &env.kube else {
        checks.push(no_cluster("pod", "Pod injected"));
        return None;
    };
    match sources::pod(kube, namespace, name).await {
        Ok(Some(pod)) => {
            let sa = mutate::pod_service_account_name(&pod).to_string();
            cluster_subject(
                env,
                namespace,
                &sa,
                Some(&pod),
                opts,
                checks,
                webhook_checks,
            )
            .await
        }
        Ok(None) => {
            checks.push(Check::fail(
                "pod",
                "Pod injected",
                format!("Pod {namespace}/{name} does not exist"),
                "check the name and namespace (kubectl get pods -n NS)",
            ));
            None
        }
        Err(err) => {
            checks.push(Check::fail(
                "pod",
                "Pod injected",
                err,
                "the doctor needs get on pods",
            ));
            None
        }
    }
}

/// The webhook and dry-run steps: run with `--webhook-configuration`, else skipped, saying
/// how to run them.
async fn webhook_steps(
    kube: &Client,
    namespace: &str,
    sa: Option<&ServiceAccountInfo>,
    pod: Option<&serde_json::Value>,
    cfg: &MutationConfig,
    opts: &Options,
    checks: &mut Vec<Check>,
) {
    use checks::webhook::{DRY_RUN_ID, DRY_RUN_TITLE, WEBHOOK_ID, WEBHOOK_TITLE};
    let Some(name) = &opts.webhook_configuration else {
        let why = "not checked: pass --webhook-configuration NAME (the chart's is irsa-webhook)";
        checks.push(Check::skip(WEBHOOK_ID, WEBHOOK_TITLE, why));
        checks.push(Check::skip(DRY_RUN_ID, DRY_RUN_TITLE, why));
        return;
    };
    checks.push(checks::webhook::webhook(
        name,
        &webhook::entries(kube, name).await,
    ));
    checks.push(match sa {
        Some(sa) => {
            let labels = pod.and_then(|p| p.pointer("/metadata/labels"));
            let answer = webhook::dry_run_pod(kube, namespace, &sa.name, labels).await;
            checks::webhook::dry_run(namespace, sa, cfg, &Identities::default(), &answer)
        }
        None => Check::skip(DRY_RUN_ID, DRY_RUN_TITLE, "no ServiceAccount"),
    });
}

async fn cluster_subject(
    env: &Env,
    namespace: &str,
    name: &str,
    pod: Option<&serde_json::Value>,
    opts: &Options,
    checks: &mut Vec<Check>,
    webhook_checks: &mut Vec<Check>,
) -> Option<Subject> {
    let Some(kube) = &env.kube else {
        checks.push(no_cluster("service-account", "ServiceAccount"));
        return None;
    };
    let sa = match sources::service_account(kube, namespace, name).await {
        Ok(sa) => sa,
        Err(err) => {
            checks.push(Check::fail(
                "service-account",
                "ServiceAccount",
                err,
                "the doctor needs get on serviceaccounts",
            ));
            return None;
        }
    };
    let (check, facts) = checks::service_account(
        namespace,
        name,
        sa.as_ref(),
        &opts.annotation_prefix,
        &opts.default_audience,
    );
    checks.push(check);
    let cfg = MutationConfig {
        annotation_prefix: opts.annotation_prefix.clone(),
        audience: opts.default_audience.clone(),
        ..Default::default()
    };
    if let (Some(pod), Some(sa)) = (pod, &sa) {
        let check = checks::pod_mutated(pod, namespace, sa, &cfg, &Identities::default());
        let event = match (
            &check.status,
            pod.pointer("/metadata/uid").and_then(|u| u.as_str()),
        ) {
            (Status::Fail, Some(uid)) => {
                sources::pod_not_injected_event(kube, namespace, uid).await
            }
            _ => Ok(None),
        };
        checks.push(checks::with_controller_event(check, event));
    }
    webhook_steps(
        kube,
        namespace,
        sa.as_ref(),
        pod,
        &cfg,
        opts,
        webhook_checks,
    )
    .await;
    let facts = facts?;
    let bindings = sources::bindings(kube, namespace).await;
    checks.push(checks::bindings(
        namespace,
        name,
        &facts.role_arn,
        bindings.as_deref(),
    ));
    let token = sources::fresh_token(kube, namespace, name, &facts.audience, None).await;
    Some(Subject {
        role_arn: facts.role_arn,
        sub: facts.subject,
        audience: facts.audience,
        token,
    })
}

fn no_cluster(id: &'static str, title: &'static str) -> Check {
    Check::fail(
        id,
        title,
        "no Kubernetes connection",
        "set KUBECONFIG or run in a cluster (or use --token FILE --role-arn ARN offline)",
    )
}

async fn aws_and_token_steps(
    env: &Env,
    opts: &Options,
    s: &Subject,
    trust_file: Option<&(String, String)>,
    checks: &mut Vec<Check>,
) {
    let peeked = s
        .token
        .as_deref()
        .map_err(String::clone)
        .and_then(checks::peek);
    let issuer = match (&opts.issuer_url, &peeked, &env.kube) {
        (Some(url), _, _) => Ok(url.to_string()),
        (None, Ok((claims, _)), _) => Ok(claims.iss.clone()),
        (None, Err(_), Some(kube)) => discover::discover_issuer(kube)
            .await
            .map_err(|e| e.to_string()),
        (None, Err(err), None) => Err(err.clone()),
    };

    // The doctor counts no calls: its report says what each one answered.
    let client = env.aws.as_ref().map(|sdk| Aws::new(sdk, ()));
    // IAM is not asked when a trust policy file replaces the role.
    let aws = client.as_ref().filter(|_| trust_file.is_none());
    // A token's `iss` is whatever its signer wrote: only a URL IAM accepts can have a provider.
    let issuer_url = issuer.as_deref().ok().map(IssuerUrl::parse);
    let lookup = match (aws, &issuer_url) {
        (Some(aws), Some(Ok(url))) => Some(aws.find_oidc_provider(url).await),
        _ => None,
    };
    let provider = match (&lookup, &issuer_url) {
        (
            Some(Ok(ProviderLookup {
                provider: Some(p), ..
            })),
            _,
        ) => Some(p.arn.clone()),
        (_, Some(Ok(url))) => Some(url.provider_arn(&s.role_arn.partition, &s.role_arn.account)),
        _ => None,
    };

    // 3 + 4: the role and its trust policy.
    let document = match (trust_file, aws) {
        (Some((doc, source)), _) => {
            checks.push(Check::skip(
                "role",
                "IAM role",
                format!("offline: trust policy read from {source}"),
            ));
            Some(doc.clone())
        }
        (None, Some(aws)) => {
            let found = aws.get_role_trust(&s.role_arn).await;
            let provider_account = provider
                .as_deref()
                .and_then(|arn| arn.split(':').nth(4))
                .unwrap_or(&s.role_arn.account)
                .to_string();
            checks.push(checks::role(&s.role_arn, found.as_ref(), &provider_account));
            found.ok().map(|r| r.document)
        }
        (None, None) => {
            checks.push(Check::skip("role", "IAM role", "no AWS configuration"));
            None
        }
    };
    checks.push(match (&document, &provider) {
        (Some(doc), Some(provider)) => checks::trust_policy(doc, provider, &s.sub, &s.audience),
        (None, _) => Check::skip("trust-policy", "Trust policy", "the role could not be read"),
        (_, None) => Check::skip("trust-policy", "Trust policy", "the issuer is unknown"),
    });

    // 5: the OIDC provider.
    checks.push(match (&lookup, &issuer) {
        (Some(Ok(lookup)), Ok(issuer)) => checks::oidc_provider(issuer, lookup, &s.audience),
        (Some(Err(err)), _) => Check::warn(
            "oidc-provider",
            "OIDC provider",
            format!("could not list OIDC providers with the doctor's credentials: {err}"),
        ),
        (_, Err(err)) => Check::skip(
            "oidc-provider",
            "OIDC provider",
            format!("issuer unknown: {err}"),
        ),
        (None, Ok(_)) if let Some(Err(invalid)) = &issuer_url => Check::fail(
            "oidc-provider",
            "OIDC provider",
            invalid.to_string(),
            "the API server's --service-account-issuer must be an https URL IAM accepts; \
             tokens signed with this issuer can assume no role",
        )
        .with_sts_error(checks::STS_NO_PROVIDER),
        (None, Ok(_)) => Check::skip(
            "oidc-provider",
            "OIDC provider",
            "offline: IAM not consulted",
        ),
    });

    // 6 + 7: the issuer's documents and the token itself.
    let Ok(issuer) = issuer else {
        checks.push(Check::skip("issuer", "Issuer discovery", "issuer unknown"));
        checks.push(Check::skip(
            checks::KEYS_ID,
            checks::KEYS_TITLE,
            "issuer unknown",
        ));
        checks.push(token_failure(&s.token));
        checks.push(Check::skip("assume", "AssumeRole", "no verified token"));
        return;
    };
    let (discovery, jwks) = sources::issuer_documents(&env.http, &issuer).await;
    let kid = peeked.as_ref().ok().and_then(|(_, kid)| kid.as_deref());
    checks.push(checks::issuer(
        &issuer,
        discovery.as_ref().map_err(String::as_str),
        jwks.as_ref().map_err(String::as_str),
        kid,
    ));
    // A self-managed issuer serves a copy of the API server's keys: is it current? If irsa
    // publishes it, its publisher's status says why not.
    checks.push(match &env.kube {
        Some(kube) => {
            let publisher =
                sources::publisher_status(kube, &opts.irsa_namespace, &opts.issuer_state_configmap)
                    .await;
            match &jwks {
                Ok(public) => match sources::api_server_jwks(kube).await {
                    Ok(api) => checks::published_keys(&api, public, &publisher),
                    Err(err) => Check::skip(checks::KEYS_ID, checks::KEYS_TITLE, err),
                },
                Err(_) => Check::skip(
                    checks::KEYS_ID,
                    checks::KEYS_TITLE,
                    format!("no public JWKS to compare; {}", publisher.describe()),
                ),
            }
        }
        None => Check::skip(
            checks::KEYS_ID,
            checks::KEYS_TITLE,
            "offline: no API server to compare with",
        ),
    });
    checks.push(match (&s.token, &jwks) {
        (Ok(token), Ok(jwks)) => {
            checks::token(token, jwks, &issuer, &s.audience, Some(&s.sub), env.now)
        }
        (Ok(_), Err(_)) => Check::skip("token", "Token", "no JWKS to verify the signature against"),
        (Err(_), _) => token_failure(&s.token),
    });

    // 8: the real call, only when asked.
    checks.push(match (&s.token, opts.assume, &client) {
        (_, false, _) => Check::skip(
            "assume",
            "AssumeRole",
            "pass --assume to call sts:AssumeRoleWithWebIdentity",
        ),
        (Err(_), true, _) => Check::skip("assume", "AssumeRole", "no token"),
        (_, true, None) => Check::skip("assume", "AssumeRole", "no AWS configuration"),
        (Ok(token), true, Some(client)) => assume(client, &s.role_arn, token).await,
    });
}

fn token_failure(token: &Result<String, String>) -> Check {
    match token {
        Ok(_) => Check::skip("token", "Token", "not verified"),
        Err(err) => Check::fail(
            "token",
            "Token",
            err.clone(),
            "the doctor needs create on serviceaccounts/token (TokenRequest)",
        ),
    }
}

async fn assume(aws: &Aws, role_arn: &RoleArn, token: &str) -> Check {
    match aws
        .assume_role_with_web_identity(role_arn, token, "irsa-doctor")
        .await
    {
        Ok(assumed) => Check::pass(
            "assume",
            "AssumeRole",
            format!(
                "assumed {}, credentials expire {}",
                assumed.arn, assumed.expires
            ),
        ),
        Err(rejection) => Check::fail(
            "assume",
            "AssumeRole",
            rejection.to_string(),
            "fix the failures above; this is the error the pod gets",
        )
        .with_sts_error(rejection.to_string()),
    }
}
