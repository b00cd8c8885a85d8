#!/usr/bin/env bash
# A *verifying* STS for the test suite: SeaweedFS (`weed mini`), built from its Go module at a
# pinned version and started on 127.0.0.1. One process serves S3 (http and https), the
# embedded IAM API (roles, OIDC providers, managed policies) and an STS whose
# AssumeRoleWithWebIdentity really verifies a ServiceAccount token: its signature against the
# issuer's JWKS (found through the issuer's OIDC discovery document, over https, trusting
# SSL_CERT_FILE), its expiry, its audience against the OIDC provider's client IDs, and the
# role's trust policy with SeaweedFS's own evaluator. moto accepts any token; this does not.
#
#   scripts/verifying-sts.sh build   build weed into the cache (no-op when there)
#   scripts/verifying-sts.sh up      build if needed, start, wait until S3 and STS answer, print env
#   scripts/verifying-sts.sh env     print the environment of the running verifier
#   scripts/verifying-sts.sh down    stop exactly the processes `up` started
#
# Binary: ${IRSA_K8S_CACHE:-~/.cache/irsa/k8s}/seaweedfs-<version>/weed. State (PKI, IAM
# config, data, logs, pids): ${IRSA_VERIFIER_DIR:-/tmp/irsa-verifier}.
# IRSA_VERIFIER_TRUST: colon-separated CA files the STS trusts besides the system CAs and its
# own CA (e.g. a control plane's CA, so it can fetch that API server's discovery and JWKS).
# Go reads that bundle once: a CA must be named before `up`.
#
# Beside weed, `up` starts scripts/verifier-dialect.py: a proxy in front of the same endpoint
# that keeps a SeaweedFS-dialect twin of each trust statement irsa writes
# (IRSA_E2E_VERIFIER_IRSA_ENDPOINT, what irsa's controller and doctor are given).
#
# What SeaweedFS (this version) does, in short:
# - trust policies: a web identity's claims are `oidc:sub` (and `oidc:aud` only when the
#   token's `aud` is a string; a Kubernetes token's is a list), the principal
#   `{"Federated": "*"}` or `{"Federated": "<the token's iss, verbatim>"}`; AWS's own form (the
#   provider ARN, `<host/path>:sub`) never matches. They are evaluated on the token's claims
#   before its signature is checked.
# - the JWKS is cached 1 h per OIDC provider, not configurable; it is fetched again at once
#   when a token names a kid the cache lacks, and a provider whose client IDs or thumbprints
#   change starts with an empty cache.
# - GetRole returns the trust policy re-serialized (Action always a list, "Resource": [""]
#   added, condition keys sorted), URL-encoded; no role tags, no inline role policies (a role's
#   S3 permissions: CreatePolicy + AttachRolePolicy); anonymous reads through a bucket policy
#   with Principal "*".
set -euo pipefail

# A pseudo-version of github.com/seaweedfs/seaweedfs (the module publishes no semver tags).
SEAWEEDFS_VERSION="${IRSA_SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
CACHE="${IRSA_K8S_CACHE:-$HOME/.cache/irsa/k8s}"
WEED="$CACHE/seaweedfs-$SEAWEEDFS_VERSION/weed"
DIR="${IRSA_VERIFIER_DIR:-/tmp/irsa-verifier}"
SCRIPTS="$(cd "$(dirname "$0")" && pwd)"
# Bounded waits (seconds).
READY_TIMEOUT="${IRSA_VERIFIER_TIMEOUT:-120}"

# The identity the irsa controller and the tests sign IAM, STS and S3 calls with (an admin).
ACCESS_KEY_ID="IRSAVERIFIERADMIN001"
SECRET_ACCESS_KEY="irsa-verifier-admin-secret-0123456789abcd"
# The account of OIDC provider ARNs (arn:aws:iam::ACCOUNT:oidc-provider/...) and of
# GetCallerIdentity. Role ARNs SeaweedFS reports carry none (arn:aws:iam::role/NAME).
ACCOUNT="123456789012"

log() { echo "verifying-sts: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=scripts/local-procs.sh
source "$SCRIPTS/local-procs.sh"

# ---------------------------------------------------------------------------------------
# build

build_weed() {
  local src="$CACHE/src/seaweedfs-$SEAWEEDFS_VERSION"
  rm -rf "$src" && mkdir -p "$src" && cd "$src"
  go mod init irsa.dev/seaweedfs-build >/dev/null 2>&1
  go mod edit -require "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION"
  # seaweedfs' own go.mod carries this replace (the original repository is gone); replace
  # directives of a dependency do not apply, so the wrapper repeats it.
  go mod edit -replace "github.com/tyler-smith/go-bip39=github.com/cosmos/go-bip39@v1.0.0"
  cat >tools.go <<'EOF'
//go:build tools

package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
EOF
  go mod tidy >/dev/null
  mkdir -p "$(dirname "$WEED").tmp"
  CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$(dirname "$WEED").tmp/weed" \
    github.com/seaweedfs/seaweedfs/weed
}

cmd_build() {
  [[ -x "$WEED" ]] && return 0
  command -v go >/dev/null || die "go is not on PATH (weed is built from its Go module)"
  log "building seaweedfs $SEAWEEDFS_VERSION into $WEED (first run only; ~10-20 min on 2 cores)"
  local start=$SECONDS dir
  dir="$(dirname "$WEED")"
  rm -rf "$dir.tmp"
  (build_weed)
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  log "built in $((SECONDS - start)) s"
}

# ---------------------------------------------------------------------------------------
# up / down

gen_pki() {
  local pki="$DIR/pki"
  mkdir -p "$pki" && cd "$pki"
  new_ca irsa-verifier-ca
  cert server "/CN=irsa-verifier" "IP:127.0.0.1,DNS:localhost"
  cp ca.crt "$DIR/ca.crt"
  cd - >/dev/null
}

# The CAs weed's outgoing https (the STS fetching discovery and JWKS) trusts: the system's,
# its own (an issuer served from its own https buckets) and every file in IRSA_VERIFIER_TRUST.
write_trust_bundle() {
  local bundle="$DIR/pki/trust.pem" f
  : >"$bundle"
  for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
    if [[ -f "$f" ]]; then
      cat "$f" >>"$bundle"
      break
    fi
  done
  cat "$DIR/pki/ca.crt" >>"$bundle"
  local IFS=:
  for f in ${IRSA_VERIFIER_TRUST:-}; do
    [[ -n "$f" ]] || continue
    [[ -f "$f" ]] || die "IRSA_VERIFIER_TRUST names $f, which does not exist"
    cat "$f" >>"$bundle"
  done
}

write_config() {
  # Static identities (-s3.config): the admin. Its Admin action lets it use the whole IAM
  # API, the STS and every bucket; bucket policies decide anonymous reads.
  cat >"$DIR/s3.json" <<EOF
{
  "identities": [
    {
      "name": "irsa-admin",
      "credentials": [{"accessKey": "$ACCESS_KEY_ID", "secretKey": "$SECRET_ACCESS_KEY"}],
      "actions": ["Admin", "Read", "Write", "List", "Tagging"]
    }
  ]
}
EOF
  # Advanced IAM (-s3.iam.config): the STS, and a deny-by-default policy engine. Roles, OIDC
  # providers and policies come from the IAM API at run time (kept in memory: a restart
  # forgets them, as `up` wipes the state anyway).
  local signing_key
  signing_key="$(openssl rand -base64 32)"
  cat >"$DIR/iam.json" <<EOF
{
  "sts": {
    "issuer": "irsa-verifier-sts",
    "signingKey": "$signing_key",
    "accountId": "$ACCOUNT",
    "tokenDuration": "1h",
    "maxSessionLength": "12h"
  },
  "policy": {"defaultEffect": "Deny", "storeType": "memory"},
  "providers": [],
  "roles": [],
  "policies": []
}
EOF
}

# The S3 gateway and the STS behind it both answer: an unsigned AssumeRoleWithWebIdentity
# without a token gets the STS's own MissingParameter (an S3-only server would not).
sts_answers() {
  curl -s -X POST "http://127.0.0.1:$1/" \
    -d 'Action=AssumeRoleWithWebIdentity&Version=2011-06-15' | grep -q '<Code>MissingParameter</Code>'
}

cmd_up() {
  if [[ -f "$DIR/env" ]] && cmd_running; then
    log "already running ($DIR)"
    cat "$DIR/env"
    return 0
  fi
  cmd_build
  cmd_down_quiet
  rm -rf "$DIR" && mkdir -p "$DIR"/{logs,pids,data}
  local master master_grpc volume volume_grpc filer filer_grpc s3 s3_https s3_grpc admin admin_grpc
  master=$(free_port) master_grpc=$(free_port)
  volume=$(free_port) volume_grpc=$(free_port)
  filer=$(free_port) filer_grpc=$(free_port)
  s3=$(free_port) s3_https=$(free_port) s3_grpc=$(free_port)
  admin=$(free_port) admin_grpc=$(free_port)
  echo "$master $master_grpc $volume $volume_grpc $filer $filer_grpc $s3 $s3_https $s3_grpc $admin $admin_grpc" \
    >"$DIR/ports"
  gen_pki
  write_trust_bundle
  write_config
  local start_time=$SECONDS

  # Every port explicit (mini would otherwise probe from fixed defaults and derive gRPC ports
  # as port+10000); the Admin server cannot be turned off (it hosts mini's maintenance
  # worker), only its UI; WebDAV, Iceberg and Lance off; no telemetry.
  # Volumes: a fixed count of small ones. By default mini sizes both from the disk's free
  # space, and every bucket is a collection of its own that takes several volumes, so on a
  # nearly full disk a later bucket got no volume at all (PutObject: InternalError, "No
  # writable volumes"). Volumes are not preallocated: the count reserves no disk.
  SSL_CERT_FILE="$DIR/pki/trust.pem" "$WEED" mini \
    -dir "$DIR/data" \
    -ip 127.0.0.1 -ip.bind 127.0.0.1 \
    -master.port "$master" -master.port.grpc "$master_grpc" -master.telemetry=false \
    -volume.port "$volume" -volume.port.grpc "$volume_grpc" \
    -volume.max 1000 -master.volumeSizeLimitMB 64 \
    -filer.port "$filer" -filer.port.grpc "$filer_grpc" -filer.localSocket "$DIR/filer.sock" \
    -s3.port "$s3" -s3.port.https "$s3_https" -s3.port.grpc "$s3_grpc" \
    -s3.localSocket "$DIR/s3.sock" \
    -s3.cert.file "$DIR/pki/server.crt" -s3.key.file "$DIR/pki/server.key" \
    -s3.config "$DIR/s3.json" -s3.iam.config "$DIR/iam.json" -s3.iam.readOnly=false \
    -s3.port.iceberg 0 -s3.port.lance 0 \
    -webdav=false \
    -admin.ui=false -admin.port "$admin" -admin.port.grpc "$admin_grpc" -admin.port.legacy 0 \
    >"$DIR/logs/weed.log" 2>&1 </dev/null &
  echo $! >"$DIR/pids/weed"

  wait_until "$READY_TIMEOUT" "S3 (http) /healthz" curl -sf "http://127.0.0.1:$s3/healthz"
  wait_until "$READY_TIMEOUT" "S3 (https) /healthz" \
    curl -sf --cacert "$DIR/ca.crt" "https://127.0.0.1:$s3_https/healthz"
  wait_until "$READY_TIMEOUT" "the STS" sts_answers "$s3"

  # irsa's controller and doctor reach the verifier through the trust-policy dialect proxy;
  # the pods' SDKs reach weed directly.
  local proxy
  proxy=$(free_port)
  AWS_ACCESS_KEY_ID="$ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$SECRET_ACCESS_KEY" \
    IRSA_VERIFIER_ACCOUNT="$ACCOUNT" python3 "$SCRIPTS/verifier-dialect.py" "$proxy" \
    "http://127.0.0.1:$s3" >"$DIR/logs/verifier-dialect.log" 2>&1 </dev/null &
  echo $! >"$DIR/pids/verifier-dialect"
  wait_until "$READY_TIMEOUT" "verifier-dialect.py" curl -sf "http://127.0.0.1:$proxy/healthz"

  {
    echo "export IRSA_E2E_VERIFIER_ENDPOINT=http://127.0.0.1:$s3"
    echo "export IRSA_E2E_VERIFIER_IRSA_ENDPOINT=http://127.0.0.1:$proxy"
    echo "export IRSA_E2E_VERIFIER_HTTPS=https://127.0.0.1:$s3_https"
    echo "export IRSA_E2E_VERIFIER_CA=$DIR/ca.crt"
    echo "export IRSA_E2E_VERIFIER_ACCESS_KEY_ID=$ACCESS_KEY_ID"
    echo "export IRSA_E2E_VERIFIER_SECRET_ACCESS_KEY=$SECRET_ACCESS_KEY"
    echo "export IRSA_E2E_VERIFIER_ACCOUNT=$ACCOUNT"
    echo "export IRSA_E2E_VERIFIER_DIR=$DIR"
  } >"$DIR/env"
  log "up in $((SECONDS - start_time)) s: S3, IAM and STS on http://127.0.0.1:$s3 and https://127.0.0.1:$s3_https (state and logs in $DIR)"
  cat "$DIR/env"
}

cmd_running() {
  local pidfile
  [[ -f "$DIR/pids/weed" ]] || return 1
  for pidfile in "$DIR"/pids/*; do
    kill -0 "$(cat "$pidfile")" 2>/dev/null || return 1
  done
}

# Kills exactly the processes `up` recorded and waits (bounded) for them.
cmd_down_quiet() {
  [[ -d "$DIR/pids" ]] || return 0
  stop_one verifier-dialect python3
  stop_one weed weed
  # mini puts its gRPC unix sockets in /tmp, named by port; remove ours.
  if [[ -f "$DIR/ports" ]]; then
    local ports
    read -r -a ports <"$DIR/ports"
    rm -f "/tmp/seaweedfs-master-grpc-${ports[1]}.sock" "/tmp/seaweedfs-volume-grpc-${ports[3]}.sock" \
      "/tmp/seaweedfs-filer-grpc-${ports[5]}.sock" "/tmp/seaweedfs-s3-grpc-${ports[8]}.sock" \
      "/tmp/seaweedfs-admin-grpc-${ports[10]}.sock"
  fi
}

case "${1:-}" in
  build) cmd_build ;;
  up) cmd_up ;;
  env) cmd_running && [[ -f "$DIR/env" ]] || die "not running (scripts/verifying-sts.sh up)"; cat "$DIR/env" ;;
  down) cmd_down_quiet; log "down" ;;
  *) echo "usage: $0 build|up|env|down" >&2; exit 2 ;;
esac
