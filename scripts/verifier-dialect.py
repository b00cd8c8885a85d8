#!/usr/bin/env python3
"""The verifying STS's trust-policy dialect, kept beside irsa's AWS-exact statements.

SeaweedFS (scripts/verifying-sts.sh) evaluates a role's trust policy in its own dialect: it
knows a web identity's claims as `oidc:sub` (and `oidc:aud` only for a string `aud`; a
Kubernetes token carries a list), under a `Federated` principal that is `*` or the token's
`iss`. The statements irsa
writes are AWS's (`<issuer host/path>:sub`, the provider ARN), which SeaweedFS never matches.
irsa stays AWS-exact; this proxy, which irsa's controller and doctor reach the verifier
through (IRSA_E2E_VERIFIER_IRSA_ENDPOINT), passes every request and answer through unchanged
(the Host header included, so SigV4 signatures stay valid) except:

- after a successful UpdateAssumeRolePolicy, before its caller hears back, it writes the same
  document again with a twin after every statement irsa owns (Sid `Irsa` + 16 hex digits):
  the twin's Sid is `Dialect` + the original's, its principal the issuer URL of the
  original's provider ARN (`{"Federated": "https://<host/path>"}`, which SeaweedFS matches
  against the token's `iss`), its Effect and Action the original's, and each condition
  operator keeps its `<host/path>:sub` values under `oidc:sub` (same operator, same values);
  `<host/path>:aud` keys are dropped, since the audience stays enforced by the OIDC
  provider's client IDs. A statement it cannot translate that way (another principal, a key
  of another issuer or claim, no `sub`) gets no twin, so the verifier refuses, as AWS would
  not match it either. Twins of an earlier write are replaced, never kept;
- every GetRole answer has the twins taken out, so the controller and the doctor read
  exactly the AWS document irsa wrote, and the steady state stays write-free. Two quirks of
  SeaweedFS's answer are undone on the way, so that it reads as AWS's: the `"Resource": [""]`
  it adds to every trust statement is dropped (a trust policy has no Resource), and the
  account it leaves out of the role ARN (`arn:aws:iam::role/NAME`) is put back
  (IRSA_VERIFIER_ACCOUNT, the account of its STS configuration).

Which ServiceAccounts are admitted is therefore decided by SeaweedFS's own evaluator, on the
subjects irsa wrote.

Usage: verifier-dialect.py PORT UPSTREAM, with the admin's keys in AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY (scripts/verifying-sts.sh starts and stops it with the verifier);
verifier-dialect.py --self-test checks the translation.
"""

import html
import http.client
import http.server
import json
import os
import re
import sys
import urllib.parse

TWIN_PREFIX = "Dialect"
OWNED_SID = re.compile(r"^Irsa[0-9a-f]{16}$")


def statements(doc):
    found = doc.get("Statement", [])
    return found if isinstance(found, list) else [found]


def is_twin(statement):
    return str(statement.get("Sid", "")).startswith(TWIN_PREFIX)


def twin(statement):
    """SeaweedFS's twin of a statement irsa owns, or None: for any other statement, and for
    an owned one it cannot translate without admitting more than AWS would (a principal that
    is not an OIDC provider, a condition key of another issuer or claim, no `sub` at all), so
    that the verifier then refuses, as AWS would for a statement it cannot match."""
    sid = statement.get("Sid", "")
    if not OWNED_SID.match(str(sid)):
        return None
    principal = (statement.get("Principal") or {}).get("Federated", "")
    if not isinstance(principal, str) or ":oidc-provider/" not in principal:
        return None
    host_path = principal.split(":oidc-provider/", 1)[1]
    condition = {}
    for operator, block in (statement.get("Condition") or {}).items():
        for key, values in block.items():
            if key == f"{host_path}:sub":
                condition.setdefault(operator, {})["oidc:sub"] = values
            elif key != f"{host_path}:aud":
                return None
    if not condition:
        return None
    return {
        "Sid": TWIN_PREFIX + sid,
        "Effect": statement.get("Effect"),
        # SeaweedFS matches a web identity's principal against the token's `iss`.
        "Principal": {"Federated": "https://" + host_path},
        "Action": statement.get("Action"),
        "Condition": condition,
    }


def with_twins(document):
    doc = json.loads(document)
    out = []
    for statement in statements(doc):
        if is_twin(statement):
            continue
        out.append(statement)
        extra = twin(statement)
        if extra is not None:
            out.append(extra)
    doc["Statement"] = out
    return json.dumps(doc, separators=(",", ":"))


def without_twins(document):
    doc = json.loads(document)
    kept = [s for s in statements(doc) if not is_twin(s)]
    for statement in kept:
        if statement.get("Resource") == [""]:
            del statement["Resource"]
    doc["Statement"] = kept
    return json.dumps(doc, separators=(",", ":"))


DOCUMENT = re.compile(rb"(<AssumeRolePolicyDocument>)(.*?)(</AssumeRolePolicyDocument>)", re.S)


def strip_get_role(body, account):
    """A GetRole answer without the twins, its document kept in the form it came in, and its
    role ARN with the account."""

    def replace(match):
        raw = html.unescape(match.group(2).decode())
        url_encoded = raw.lstrip().startswith("%")
        document = urllib.parse.unquote(raw) if url_encoded else raw
        stripped = without_twins(document)
        encoded = urllib.parse.quote(stripped, safe="") if url_encoded else html.escape(stripped)
        return match.group(1) + encoded.encode() + match.group(3)

    body = body.replace(b"<Arn>arn:aws:iam::role/", f"<Arn>arn:aws:iam::{account}:role/".encode())
    return DOCUMENT.sub(replace, body)


class Proxy(http.server.BaseHTTPRequestHandler):
    upstream = None  # (host, port)
    iam = None  # boto3 IAM client straight to the upstream
    account = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("verifier-dialect: " + (fmt % args) + "\n")

    def handle_one(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        conn.request(self.command, self.path, body=body, headers=headers)
        answer = conn.getresponse()
        payload = answer.read()
        form = urllib.parse.parse_qs(body.decode(errors="replace")) if body else {}
        action = (form.get("Action") or [""])[0]
        if 200 <= answer.status < 300:
            if action == "UpdateAssumeRolePolicy":
                document = form["PolicyDocument"][0]
                twinned = with_twins(document)
                if twinned != json.dumps(json.loads(document), separators=(",", ":")):
                    self.iam.update_assume_role_policy(
                        RoleName=form["RoleName"][0], PolicyDocument=twinned
                    )
            elif action == "GetRole":
                payload = strip_get_role(payload, self.account)
        self.send_response(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        conn.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_one


def self_test():
    sid = "Irsa0123456789abcdef"
    host = "127.0.0.1:8443/issuer/cluster"
    owned = {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"Federated": f"arn:aws:iam::123456789012:oidc-provider/{host}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringLike": {f"{host}:aud": "sts.amazonaws.com", f"{host}:sub": ["a", "b*"]}},
    }
    foreign = {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    doc = json.dumps({"Version": "2012-10-17", "Statement": [foreign, owned]})
    twinned = json.loads(with_twins(doc))
    assert twinned["Statement"][2] == {
        "Sid": "Dialect" + sid,
        "Effect": "Allow",
        "Principal": {"Federated": f"https://{host}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringLike": {"oidc:sub": ["a", "b*"]}},
    }, twinned
    assert json.loads(with_twins(json.dumps(twinned))) == twinned, "twins are replaced, not added"
    # What it cannot translate faithfully gets no twin: the verifier then refuses.
    for broken in (
        {"StringLike": {f"{host}:subx": ["a"]}},
        {"StringLike": {f"other.example/id/X:sub": ["a"]}},
        {"StringLike": {f"{host}:sub": ["a"], f"{host}:amr": "x"}},
        {"StringEquals": {f"{host}:aud": "sts.amazonaws.com"}},
    ):
        assert twin(dict(owned, Condition=broken)) is None, broken
    assert twin(dict(owned, Principal={"Federated": "*"})) is None
    assert json.loads(without_twins(json.dumps(twinned)))["Statement"] == [foreign, owned]
    stored = json.loads(json.dumps(twinned))
    stored["Statement"][0]["Resource"] = [""]
    assert json.loads(without_twins(json.dumps(stored)))["Statement"] == [foreign, owned]
    for form in (urllib.parse.quote(json.dumps(twinned), safe=""), html.escape(json.dumps(twinned))):
        answer = (
            f"<Role><Arn>arn:aws:iam::role/r</Arn>"
            f"<AssumeRolePolicyDocument>{form}</AssumeRolePolicyDocument></Role>"
        ).encode()
        stripped = strip_get_role(answer, "123456789012").decode()
        assert "Dialect" not in stripped and sid in stripped, stripped
        assert stripped.startswith("<Role><Arn>arn:aws:iam::123456789012:role/r</Arn>"), stripped
    print("verifier-dialect: self-test passed")


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        return
    port, upstream = int(sys.argv[1]), urllib.parse.urlsplit(sys.argv[2])
    import boto3  # only the proxy needs it; the self-test runs without

    Proxy.upstream = (upstream.hostname, upstream.port)
    Proxy.account = os.environ["IRSA_VERIFIER_ACCOUNT"]
    Proxy.iam = boto3.client("iam", endpoint_url=sys.argv[2], region_name="us-east-1")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Proxy)
    print(f"verifier-dialect: listening on 127.0.0.1:{port}, upstream {sys.argv[2]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
