//! The API server's side of the issuer: which issuer this cluster's tokens carry, and the one
//! raw GET of the API server's own issuer documents (discovery document, JWKS) that the
//! controller, the publisher and the doctor share.
//!
//! The issuer is `--issuer-url` when given (used byte-for-byte, no request made), otherwise
//! the `issuer` of the API server's `/.well-known/openid-configuration`. Either way it must be
//! an [`IssuerUrl`] (docs/design.md §4.1); oddities that are legal but often unintended (trailing `/`,
//! upper-case host) come back as warnings.

use serde::Deserialize;

use super::IssuerUrl;
use super::documents::DISCOVERY_PATH;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "could not read the service-account issuer from the API server (GET /{DISCOVERY_PATH}): \
         {source}; allow the controller `get` on that non-resource URL (bind the ClusterRole \
         system:service-account-issuer-discovery) or set --issuer-url"
    )]
    Discovery {
        #[source]
        source: kube::Error,
    },
    #[error(
        "issuer {issuer:?} (from /{DISCOVERY_PATH}) cannot be an IAM OIDC provider: {why}; set \
         --issuer-url to the API server's --service-account-issuer"
    )]
    InvalidIssuer { issuer: String, why: String },
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Discovery { .. } => "issuer_discovery",
            Error::InvalidIssuer { .. } => "invalid_issuer",
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

impl IssuerSource {
    /// Where the issuer came from, as the controller's start-up line says it.
    pub fn as_str(self) -> &'static str {
        match self {
            IssuerSource::Flag => "--issuer-url",
            IssuerSource::Discovery => "discovered",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    /// Exactly as tokens carry it in `iss`.
    pub url: IssuerUrl,
    pub source: IssuerSource,
}

impl Issuer {
    /// IAM's form of the URL (no `https://`), also the prefix of the trust-policy condition
    /// keys (`<host/path>:sub`).
    pub fn host_path(&self) -> &str {
        self.url.host_path()
    }
}

/// GET `/<document>` from the API server (`document` as in [`super::documents`]): the issuer
/// documents as the API server itself serves them, through the API, so that keys of an
/// external signer rotating without a restart are seen too.
pub async fn api_server_document(client: &kube::Client, document: &str) -> kube::Result<String> {
    let request = http::Request::get(format!("/{document}"))
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    client.request_text(request).await
}

#[derive(Debug, Deserialize)]
struct OpenIdConfiguration {
    issuer: String,
}

/// GET `/.well-known/openid-configuration` from the API server → its `issuer`.
pub async fn discover_issuer(client: &kube::Client) -> Result<String> {
    let text = api_server_document(client, DISCOVERY_PATH)
        .await
        .map_err(|source| Error::Discovery { source })?;
    let doc: OpenIdConfiguration = serde_json::from_str(&text).map_err(|e| Error::Discovery {
        source: kube::Error::SerdeError(e),
    })?;
    Ok(doc.issuer)
}

/// The issuer: `flag` when given (no request; the flag's parser validated it), else
/// discovered and validated here.
pub async fn issuer(client: &kube::Client, flag: Option<&IssuerUrl>) -> Result<Issuer> {
    if let Some(url) = flag {
        return Ok(Issuer {
            url: url.clone(),
            source: IssuerSource::Flag,
        });
    }
    let url = discover_issuer(client).await?;
    let url = IssuerUrl::parse(&url).map_err(|e| Error::InvalidIssuer {
        issuer: e.url,
        why: e.why,
    })?;
    Ok(Issuer {
        url,
        source: IssuerSource::Discovery,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use http::{Response, StatusCode};
    use kube::client::Body;

    use crate::testing::kube_api::{ApiHandle as Handle, mock_client};

    /// Answers the next API request after checking it is the discovery GET.
    async fn answer_discovery(mut handle: Handle, status: StatusCode, body: &str) {
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.method(), http::Method::GET);
        assert_eq!(req.uri().path(), format!("/{DISCOVERY_PATH}"));
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
                url: IssuerUrl::parse("https://oidc.eks.eu-west-1.amazonaws.com/id/ABC").unwrap(),
                source: IssuerSource::Discovery,
            }
        );
        assert_eq!(got.host_path(), "oidc.eks.eu-west-1.amazonaws.com/id/ABC");
        assert!(got.url.warnings().is_empty());
    }

    #[tokio::test]
    async fn the_flag_wins_and_no_request_is_made() {
        let (client, mut handle) = mock_client();
        let flag = IssuerUrl::parse("https://issuer.example.com/cluster/").unwrap();
        let got = issuer(&client, Some(&flag)).await.unwrap();
        assert_eq!(got.url.as_str(), "https://issuer.example.com/cluster/");
        assert_eq!(got.source, IssuerSource::Flag);
        assert_eq!(got.url.warnings().len(), 1, "{:?}", got.url.warnings());
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
        assert!(matches!(err, Error::InvalidIssuer { .. }));
        assert!(
            err.to_string().contains("http://kubernetes.default.svc"),
            "{err}"
        );
    }
}
