//! Who this cluster is to IAM (SPEC §4.1): its service-account issuer URL, and the account and
//! partition the controller's credentials belong to.
//!
//! The issuer is `--issuer-url` when given (used byte-for-byte, no request made), otherwise
//! the `issuer` of the API server's `/.well-known/openid-configuration`. Nothing is normalised:
//! STS compares a token's `iss` with the IAM provider's URL exactly, so a "helpful" trailing
//! slash or lower-casing here would produce a provider no token matches. Oddities that are
//! legal but often unintended (trailing `/`, upper-case host) come back as warnings.

use serde::Deserialize;

use super::aws::{self, Aws};

/// The discovery path every conformant API server serves (KEP-1393).
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "could not read the service-account issuer from the API server (GET {DISCOVERY_PATH}): \
         {source}; allow the controller `get` on that non-resource URL (bind the ClusterRole \
         system:service-account-issuer-discovery) or set --issuer-url"
    )]
    Discovery {
        #[source]
        source: kube::Error,
    },
    #[error(
        "issuer {issuer:?} (from {origin}) cannot be an IAM OIDC provider: {why}; set \
         --issuer-url to the API server's --service-account-issuer"
    )]
    InvalidIssuer {
        issuer: String,
        origin: IssuerSource,
        why: String,
    },
    #[error("--cluster-name is empty; give this cluster a name (it tags the OIDC provider)")]
    NoClusterName,
    #[error(transparent)]
    Aws(#[from] aws::Error),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Discovery { .. } => "issuer_discovery",
            Error::InvalidIssuer { .. } => "invalid_issuer",
            Error::NoClusterName => "no_cluster_name",
            Error::Aws(e) => e.metric_label(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerSource {
    /// `--issuer-url`.
    Flag,
    /// The API server's discovery document.
    Discovery,
}

impl std::fmt::Display for IssuerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IssuerSource::Flag => "--issuer-url",
            IssuerSource::Discovery => DISCOVERY_PATH,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    /// Exactly as tokens carry it in `iss`.
    pub url: String,
    pub source: IssuerSource,
    /// Legal but suspicious details, for a log line / Event.
    pub warnings: Vec<String>,
}

impl Issuer {
    /// IAM's form of the URL (no `https://`), also the prefix of the trust-policy condition
    /// keys (`<host/path>:sub`).
    pub fn host_path(&self) -> &str {
        self.url.strip_prefix("https://").unwrap_or(&self.url)
    }
}

/// PURE: is `url` usable as an IAM OIDC provider URL? Returns the warnings on success.
pub fn check_issuer(url: &str, origin: IssuerSource) -> Result<Vec<String>> {
    let invalid = |why: &str| Error::InvalidIssuer {
        issuer: url.to_string(),
        origin,
        why: why.to_string(),
    };
    // Checked on the raw text: the URL parser would lower-case the scheme and accept
    // `HTTPS://`, which IAM does not.
    if !url.starts_with("https://") {
        return Err(invalid("it does not start with https://"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&format!("not a URL ({e})")))?;
    let host = parsed.host_str().filter(|h| !h.is_empty());
    if host.is_none() {
        return Err(invalid("it has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() || url.contains(['?', '#']) {
        return Err(invalid(
            "it has a query or fragment, which OIDC issuers may not have",
        ));
    }
    if url.len() > 255 {
        return Err(invalid("it is longer than IAM's 255 characters"));
    }
    let mut warnings = Vec::new();
    let raw_host = url
        .strip_prefix("https://")
        .unwrap_or(url)
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    if raw_host.bytes().any(|b| b.is_ascii_uppercase()) {
        warnings.push(format!(
            "issuer {url:?} has upper-case letters in its host; IAM and STS compare it \
             byte-for-byte, so tokens must carry exactly this spelling"
        ));
    }
    if url.ends_with('/') {
        warnings.push(format!(
            "issuer {url:?} ends with '/'; IAM and STS compare it byte-for-byte, so tokens must \
             carry the slash too (check the API server's --service-account-issuer)"
        ));
    }
    Ok(warnings)
}

#[derive(Debug, Deserialize)]
struct OpenIdConfiguration {
    issuer: String,
}

/// GET `/.well-known/openid-configuration` from the API server → its `issuer`.
pub async fn discover_issuer(client: &kube::Client) -> Result<String> {
    let request = http::Request::get(DISCOVERY_PATH)
        .body(Vec::new())
        .map_err(|e| Error::Discovery {
            source: kube::Error::HttpError(e),
        })?;
    let doc: OpenIdConfiguration = client
        .request(request)
        .await
        .map_err(|source| Error::Discovery { source })?;
    Ok(doc.issuer)
}

/// The issuer: `flag` when given (no request), else discovered.
pub async fn issuer(client: &kube::Client, flag: Option<&str>) -> Result<Issuer> {
    let (url, source) = match flag.map(str::trim).filter(|f| !f.is_empty()) {
        Some(f) => (f.to_string(), IssuerSource::Flag),
        None => (discover_issuer(client).await?, IssuerSource::Discovery),
    };
    let warnings = check_issuer(&url, source)?;
    Ok(Issuer {
        url,
        source,
        warnings,
    })
}

/// Everything the reconcilers need to know about "this cluster".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterIdentity {
    pub cluster_name: String,
    pub issuer: Issuer,
    pub account: String,
    pub partition: String,
}

impl ClusterIdentity {
    /// The ARN of this cluster's OIDC provider (whether or not it exists yet).
    pub fn provider_arn(&self) -> String {
        format!(
            "arn:{}:iam::{}:oidc-provider/{}",
            self.partition,
            self.account,
            self.issuer.host_path()
        )
    }
}

/// Resolves the issuer and asks STS who we are.
pub async fn resolve(
    client: &kube::Client,
    issuer_flag: Option<&str>,
    cluster_name: &str,
    aws: &Aws,
) -> Result<ClusterIdentity> {
    if cluster_name.trim().is_empty() {
        return Err(Error::NoClusterName);
    }
    let issuer = issuer(client, issuer_flag).await?;
    for w in &issuer.warnings {
        tracing::warn!("{w}");
    }
    let me = aws.caller_identity().await?;
    Ok(ClusterIdentity {
        cluster_name: cluster_name.to_string(),
        issuer,
        account: me.account,
        partition: me.partition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use http::{Request, Response, StatusCode};
    use kube::client::Body;

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    fn mock_client() -> (kube::Client, Handle) {
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        (kube::Client::new(svc, "default"), handle)
    }

    /// Answers the next API request after checking it is the discovery GET.
    async fn answer_discovery(mut handle: Handle, status: StatusCode, body: &str) {
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.method(), http::Method::GET);
        assert_eq!(req.uri().path(), DISCOVERY_PATH);
        send.send_response(
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(body.as_bytes().to_vec()))
                .unwrap(),
        );
    }

    #[tokio::test]
    async fn issuer_is_discovered_from_the_api_server() {
        let (client, handle) = mock_client();
        let server = tokio::spawn(answer_discovery(
            handle,
            StatusCode::OK,
            r#"{"issuer":"https://oidc.eks.eu-west-1.amazonaws.com/id/ABC","jwks_uri":"https://x/keys","response_types_supported":["id_token"]}"#,
        ));
        let got = issuer(&client, None).await.unwrap();
        server.await.unwrap();
        assert_eq!(
            got,
            Issuer {
                url: "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC".into(),
                source: IssuerSource::Discovery,
                warnings: vec![],
            }
        );
        assert_eq!(got.host_path(), "oidc.eks.eu-west-1.amazonaws.com/id/ABC");
    }

    #[tokio::test]
    async fn the_flag_wins_and_no_request_is_made() {
        let (client, mut handle) = mock_client();
        let got = issuer(&client, Some("https://issuer.example.com/cluster/"))
            .await
            .unwrap();
        assert_eq!(got.url, "https://issuer.example.com/cluster/");
        assert_eq!(got.source, IssuerSource::Flag);
        assert_eq!(got.warnings.len(), 1, "{:?}", got.warnings);
        // Nothing was sent to the API server.
        assert!(handle.next_request().now_or_never().is_none());
    }

    #[tokio::test]
    async fn forbidden_discovery_explains_the_fix() {
        let (client, handle) = mock_client();
        let server = tokio::spawn(answer_discovery(
            handle,
            StatusCode::FORBIDDEN,
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"forbidden: User \"system:serviceaccount:irsa:controller\" cannot get path \"/.well-known/openid-configuration\"","reason":"Forbidden","code":403}"#,
        ));
        let err = issuer(&client, None).await.unwrap_err();
        server.await.unwrap();
        assert_eq!(err.metric_label(), "issuer_discovery");
        let msg = err.to_string();
        assert!(
            msg.contains("--issuer-url") && msg.contains("system:service-account-issuer-discovery"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn a_discovered_issuer_iam_cannot_use_is_reported() {
        let (client, handle) = mock_client();
        let server = tokio::spawn(answer_discovery(
            handle,
            StatusCode::OK,
            r#"{"issuer":"http://kubernetes.default.svc"}"#,
        ));
        let err = issuer(&client, None).await.unwrap_err();
        server.await.unwrap();
        assert!(matches!(
            err,
            Error::InvalidIssuer {
                origin: IssuerSource::Discovery,
                ..
            }
        ));
        assert!(
            err.to_string().contains("http://kubernetes.default.svc"),
            "{err}"
        );
    }

    #[test]
    fn issuer_check_table() {
        let ok: &[(&str, usize)] = &[
            ("https://oidc.eks.us-east-1.amazonaws.com/id/ABC", 0),
            ("https://s3.amazonaws.com/bucket/cluster", 0),
            ("https://issuer.example:8443", 0),
            ("https://Issuer.example/x", 1),
            ("https://issuer.example/", 1),
        ];
        for (url, warnings) in ok {
            assert_eq!(
                check_issuer(url, IssuerSource::Flag).unwrap().len(),
                *warnings,
                "{url}"
            );
        }
        let long = format!("https://x.example/{}", "a".repeat(250));
        let bad = [
            "http://issuer.example",
            "HTTPS://issuer.example",
            "issuer.example",
            "https://",
            "https://issuer.example/?a=b",
            "https://issuer.example/#frag",
            long.as_str(),
        ];
        for url in bad {
            assert!(
                matches!(
                    check_issuer(url, IssuerSource::Flag),
                    Err(Error::InvalidIssuer { .. })
                ),
                "{url}"
            );
        }
    }

    #[test]
    fn provider_arn_uses_partition_and_host_path() {
        let id = ClusterIdentity {
            cluster_name: "blue".into(),
            issuer: Issuer {
                url: "https://oidc.eks.cn-north-1.amazonaws.com.cn/id/X".into(),
                source: IssuerSource::Flag,
                warnings: vec![],
            },
            account: "111122223333".into(),
            partition: "aws-cn".into(),
        };
        assert_eq!(
            id.provider_arn(),
            "arn:aws-cn:iam::111122223333:oidc-provider/oidc.eks.cn-north-1.amazonaws.com.cn/id/X"
        );
    }
}
