//! Reading a trust policy the way the e2e assertions need it: which subjects of one OIDC
//! provider a document trusts, and a statement by Sid. Pure, and tested below without a cluster.

use serde_json::Value;

/// IAM accepts `Statement` as one object or an array; so does this.
pub fn statements(doc: &Value) -> Vec<&Value> {
    match doc.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    }
}

pub fn statement_by_sid<'a>(doc: &'a Value, sid: &str) -> Option<&'a Value> {
    statements(doc)
        .into_iter()
        .find(|s| s.get("Sid").and_then(Value::as_str) == Some(sid))
}

/// A string or an array of strings, as IAM allows for principals and condition values.
fn strings(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Every `sub` value (StringEquals or StringLike) of the statements whose federated principal is
/// `provider_arn`, sorted: what the document lets that provider's tokens assume.
pub fn provider_subjects(doc: &Value, provider_arn: &str, host_path: &str) -> Vec<String> {
    let key = format!("{host_path}:sub");
    let mut subjects = Vec::new();
    for s in statements(doc) {
        let ours = strings(s.pointer("/Principal/Federated")).contains(&provider_arn)
            && s.get("Effect").and_then(Value::as_str) == Some("Allow");
        if !ours {
            continue;
        }
        for op in ["StringEquals", "StringLike"] {
            let values = s
                .get("Condition")
                .and_then(|c| c.get(op))
                .and_then(|o| o.get(&key));
            subjects.extend(strings(values).into_iter().map(str::to_string));
        }
    }
    subjects.sort();
    subjects
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PROVIDER: &str = "arn:aws:iam::123456789012:oidc-provider/kind.example/cluster";
    const HOST_PATH: &str = "kind.example/cluster";

    fn doc() -> Value {
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "HumanSaml", "Effect": "Allow",
                 "Principal": {"Federated": "arn:aws:iam::123456789012:saml-provider/corp"},
                 "Action": "sts:AssumeRoleWithSAML",
                 "Condition": {"StringEquals": {"SAML:aud": "https://signin.aws.amazon.com/saml"}}},
                {"Sid": "IrsaOurs", "Effect": "Allow",
                 "Principal": {"Federated": PROVIDER},
                 "Action": "sts:AssumeRoleWithWebIdentity",
                 "Condition": {
                    "StringEquals": {
                        "kind.example/cluster:aud": "sts.amazonaws.com",
                        "kind.example/cluster:sub": ["system:serviceaccount:b:x", "system:serviceaccount:a:y"]
                    },
                    "StringLike": {"kind.example/cluster:sub": "system:serviceaccount:c:*"}
                 }},
                {"Effect": "Allow",
                 "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/other/cluster"},
                 "Action": "sts:AssumeRoleWithWebIdentity",
                 "Condition": {"StringEquals": {"other/cluster:sub": "system:serviceaccount:z:z"}}}
            ]
        })
    }

    #[test]
    fn subjects_of_one_provider_only_sorted() {
        assert_eq!(
            provider_subjects(&doc(), PROVIDER, HOST_PATH),
            [
                "system:serviceaccount:a:y",
                "system:serviceaccount:b:x",
                "system:serviceaccount:c:*"
            ]
        );
    }

    #[test]
    fn a_single_statement_object_and_a_missing_provider() {
        let single = json!({"Version": "2012-10-17", "Statement": {
            "Effect": "Allow", "Principal": {"Federated": [PROVIDER]},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {"kind.example/cluster:sub": "system:serviceaccount:n:s"}}}});
        assert_eq!(
            provider_subjects(&single, PROVIDER, HOST_PATH),
            ["system:serviceaccount:n:s"]
        );
        assert!(provider_subjects(&single, "arn:aws:iam::1:oidc-provider/x", "x").is_empty());
        assert_eq!(statements(&single).len(), 1);
    }

    #[test]
    fn finds_a_statement_by_sid() {
        let d = doc();
        assert_eq!(
            statement_by_sid(&d, "HumanSaml").unwrap()["Action"],
            "sts:AssumeRoleWithSAML"
        );
        assert!(statement_by_sid(&d, "Nope").is_none());
    }
}
