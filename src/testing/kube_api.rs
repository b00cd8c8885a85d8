//! A scripted Kubernetes API server over tower-test (the controller-rs `ApiServerVerifier`
//! pattern): each expected call is a route (method + path) with the answer to give; every
//! call is recorded, and a call no route expects gets a 404 and is listed in `unexpected`.
//! A test that must check each call as it comes takes [`mock_client`]'s handle itself.

use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::Value;

pub type ApiHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

pub fn mock_client() -> (kube::Client, ApiHandle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

/// A JSON answer as the API server sends it.
pub fn json_response(status: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

pub struct Route {
    pub method: Method,
    /// The path without the query string.
    pub path: String,
    pub status: StatusCode,
    pub body: Answer,
}

/// What a route answers with.
#[derive(Clone)]
pub enum Answer {
    Json(Value),
    /// Plain text, as the API server answers a path it does not serve at all (an API group
    /// whose CRDs are not installed: `404 page not found`), where kube finds no `Status`.
    Text(String),
}

pub fn route(method: Method, path: &str, status: u16, body: Value) -> Route {
    Route {
        method,
        path: path.to_string(),
        status: StatusCode::from_u16(status).unwrap(),
        body: Answer::Json(body),
    }
}

/// The API server's answer to a path it does not serve (no such API group or resource).
pub fn not_served(method: Method, path: &str) -> Route {
    Route {
        method,
        path: path.to_string(),
        status: StatusCode::NOT_FOUND,
        body: Answer::Text("404 page not found\n".into()),
    }
}

/// A 404 `Status` as the API server sends it.
pub fn not_found(kind: &str, name: &str) -> Value {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": format!("{kind} \"{name}\" not found"), "reason": "NotFound", "code": 404})
}

#[derive(Clone, Default)]
pub struct Calls {
    /// `METHOD path` of every call, in order, with the request body.
    pub seen: Arc<Mutex<Vec<(String, Value)>>>,
    pub unexpected: Arc<Mutex<Vec<String>>>,
}

impl Calls {
    pub fn seen(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(c, _)| c.clone())
            .collect()
    }

    pub fn body_of(&self, call: &str) -> Option<Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .find(|(c, _)| c == call)
            .map(|(_, b)| b.clone())
    }

    pub fn unexpected(&self) -> Vec<String> {
        self.unexpected.lock().unwrap().clone()
    }
}

/// Answers calls from `routes` until the client is dropped.
pub fn serve(mut handle: ApiHandle, routes: Vec<Route>) -> Calls {
    let calls = Calls::default();
    let recorded = calls.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = http_body_util::BodyExt::collect(body)
                .await
                .unwrap()
                .to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let call = format!("{} {}", parts.method, parts.uri.path());
            recorded.seen.lock().unwrap().push((call.clone(), body));
            let answer = routes
                .iter()
                .find(|r| r.method == parts.method && r.path == parts.uri.path());
            let response = match answer {
                Some(Route {
                    status,
                    body: Answer::Json(body),
                    ..
                }) => json_response(*status, body.clone()),
                Some(Route {
                    status,
                    body: Answer::Text(text),
                    ..
                }) => Response::builder()
                    .status(*status)
                    .header("content-type", "text/plain; charset=utf-8")
                    .body(Body::from(text.clone().into_bytes()))
                    .unwrap(),
                None => {
                    recorded.unexpected.lock().unwrap().push(call);
                    json_response(StatusCode::NOT_FOUND, not_found("path", parts.uri.path()))
                }
            };
            send.send_response(response);
        }
    });
    calls
}
