#!/usr/bin/env bash
# A local Kubernetes control plane for the test suite: etcd + kube-apiserver +
# kube-controller-manager (+ the matching kubectl, and helm), built from their Go modules at
# pinned versions and started on 127.0.0.1. No kubelet and no scheduler: pods stay Pending, but admission runs and the
# stored pod is the admitted one.
#
#   scripts/control-plane.sh build   build the binaries (and helm) into the cache (no-op when there)
#   scripts/control-plane.sh up      build if needed, start, wait until ready, print env
#   scripts/control-plane.sh env     print the environment of the running plane
#   scripts/control-plane.sh down    stop exactly the processes `up` started
#   scripts/control-plane.sh rotate-key add|drop   restart kube-apiserver with a second
#                                    signing key (add), then with only that key (drop)
#   scripts/control-plane.sh apiserver stop|start   stop kube-apiserver alone (etcd and
#                                    kube-controller-manager keep running), start it again
#                                    with the keys it had
#
# Binaries: ${IRSA_K8S_CACHE:-~/.cache/irsa/k8s}/<version>/. State (PKI, etcd data, logs,
# pids, kubeconfig): ${IRSA_CONTROL_PLANE_DIR:-/tmp/irsa-control-plane}.
#
# The issuer is the API server's own URL (its discovery documents then serve as the issuer's,
# as on EKS), unless `up` is given IRSA_CONTROL_PLANE_ISSUER: a self-managed cluster's
# issuer, e.g. an https bucket URL where irsa controller --publish-issuer puts the documents.
set -euo pipefail

K8S_VERSION="${IRSA_K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${IRSA_ETCD_VERSION:-v3.6.16}"
# The real helm CLI, for the install tests (helm v3 has no replace directives: go install works).
HELM_VERSION="${IRSA_HELM_VERSION:-v3.22.0}"
CACHE="${IRSA_K8S_CACHE:-$HOME/.cache/irsa/k8s}"
BIN="$CACHE/kubernetes-$K8S_VERSION-etcd-$ETCD_VERSION"
HELM="$CACHE/helm-$HELM_VERSION/helm"
DIR="${IRSA_CONTROL_PLANE_DIR:-/tmp/irsa-control-plane}"
# Bounded waits (seconds).
READY_TIMEOUT="${IRSA_CONTROL_PLANE_TIMEOUT:-120}"

log() { echo "control-plane: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=scripts/local-procs.sh
source "$(dirname "${BASH_SOURCE[0]}")/local-procs.sh"

# ---------------------------------------------------------------------------------------
# build

build_k8s() {
  local src="$CACHE/src/kubernetes-$K8S_VERSION"
  # The staging modules (k8s.io/api, client-go, ...) are published as v0.<minor>.<patch>.
  local staging_version="v0.${K8S_VERSION#v1.}"
  rm -rf "$src" && mkdir -p "$src" && cd "$src"
  go mod init irsa.dev/control-plane-build >/dev/null 2>&1
  go mod edit -require "k8s.io/kubernetes@$K8S_VERSION"
  # kubernetes' own go.mod replaces every k8s.io/* staging module with ./staging/...,
  # which does not exist in the published module: pin each to its published version.
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
  local m
  for m in $(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod"); do
    go mod edit -replace "$m=$m@$staging_version"
  done
  cat >tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF
  go mod tidy >/dev/null
  # Stamp the version as kubernetes' own build does (hack/lib/version.sh): without it the API
  # server reports v0.0.0-master and clients such as helm refuse charts with a kubeVersion.
  local minor="${K8S_VERSION#v1.}"
  minor="${minor%%.*}"
  local flags="-s" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags="$flags -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags="$flags -X $pkg.gitTreeState=clean"
  done
  mkdir -p "$BIN.tmp"
  GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags="$flags" -o "$BIN.tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl
}

build_etcd() {
  local src="$CACHE/src/etcd-$ETCD_VERSION"
  rm -rf "$src" && mkdir -p "$src" && cd "$src"
  go mod init irsa.dev/etcd-build >/dev/null 2>&1
  cat >tools.go <<'EOF'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
EOF
  go mod edit -require "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go mod tidy >/dev/null
  mkdir -p "$BIN.tmp"
  CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$BIN.tmp/etcd" go.etcd.io/etcd/server/v3
}

build_helm() {
  [[ -x "$HELM" ]] && return 0
  log "building helm $HELM_VERSION into $HELM"
  mkdir -p "$(dirname "$HELM")"
  # helm's Makefile stamps the Kubernetes version `helm template`/`lint` assume offline from
  # its client-go (v0.N.x -> 1.N); a plain `go install` would leave v1.20 and fail any chart
  # with a kubeVersion constraint.
  local gomod minor pkg flags="-s"
  gomod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
  minor="$(sed -n 's#^\s*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$gomod")"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    flags="$flags -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  GOBIN="$(dirname "$HELM")" CGO_ENABLED=0 go install -trimpath -ldflags="$flags" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

cmd_build() {
  command -v go >/dev/null || die "go is not on PATH (the control plane is built from Go modules)"
  build_helm
  if [[ -x "$BIN/kube-controller-manager" && -x "$BIN/kubectl" && -x "$BIN/etcd" ]] &&
    [[ "$("$BIN/kube-apiserver" --version 2>/dev/null)" == "Kubernetes $K8S_VERSION" ]]; then
    return 0
  fi
  log "building kubernetes $K8S_VERSION and etcd $ETCD_VERSION into $BIN (first run only; ~15-25 min on 2 cores)"
  local start=$SECONDS
  rm -rf "$BIN.tmp"
  (build_etcd)
  (build_k8s)
  rm -rf "$BIN" && mv "$BIN.tmp" "$BIN"
  log "built in $((SECONDS - start)) s"
}

# ---------------------------------------------------------------------------------------
# up / down

gen_pki() {
  local pki="$DIR/pki"
  mkdir -p "$pki" && cd "$pki"
  new_ca irsa-test-ca
  cert apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  cert admin "/O=system:masters/CN=irsa-test-admin"
  # The key pair the API server signs ServiceAccount tokens with.
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  cd - >/dev/null
}

write_kubeconfig() { # file server
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: irsa-test
  cluster:
    server: $2
    certificate-authority: $DIR/pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $DIR/pki/admin.crt
    client-key: $DIR/pki/admin.key
contexts:
- name: irsa-test
  context: {cluster: irsa-test, user: admin, namespace: default}
current-context: irsa-test
EOF
}

start() { # name command...
  local name=$1
  shift
  "$@" >"$DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/pids/$name"
}

# start_apiserver SIGNING_KEY VERIFY_KEY...: kube-apiserver on the ports `up` chose, signing
# ServiceAccount tokens with SIGNING_KEY and accepting every VERIFY_KEY (what a signing-key
# rotation changes), then waits until it is ready.
start_apiserver() {
  local signing=$1
  shift
  echo "$signing $*" >"$DIR/apiserver-keys"
  local etcd_port api_port
  read -r etcd_port api_port <"$DIR/ports"
  local server="https://127.0.0.1:$api_port" keys=() key issuer jwks=()
  for key in "$@"; do keys+=(--service-account-key-file "$key"); done
  # By default the API server's own URL: its discovery document and JWKS are then reachable
  # (anonymously, see below) at the issuer, as STS and the doctor expect. Another issuer
  # serves the JWKS beside its discovery document, as a self-managed cluster configures it.
  issuer="$(cat "$DIR/issuer")"
  [[ "$issuer" == "$server" ]] || jwks=(--service-account-jwks-uri "$issuer/openid/v1/jwks")
  start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --cert-dir "$DIR/pki" \
    --tls-cert-file "$DIR/pki/apiserver.crt" --tls-private-key-file "$DIR/pki/apiserver.key" \
    --client-ca-file "$DIR/pki/ca.crt" \
    --service-account-issuer "$issuer" "${jwks[@]}" \
    "${keys[@]}" \
    --service-account-signing-key-file "$signing" \
    --api-audiences "$server,https://kubernetes.default.svc" \
    --service-cluster-ip-range 10.96.0.0/16 \
    --authorization-mode RBAC \
    --enable-admission-plugins NamespaceLifecycle,ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
    --allow-privileged=true
  wait_until "$READY_TIMEOUT" "kube-apiserver /readyz" \
    "$BIN/kubectl" --kubeconfig "$DIR/kubeconfig" get --raw /readyz
}

# rotate-key add: a new key pair signs from now on, the old public key still verifies.
# rotate-key drop: only the new key remains (the old one leaves the API server's JWKS).
cmd_rotate_key() {
  [[ -f "$DIR/ports" ]] || die "not running (scripts/control-plane.sh up)"
  local pki="$DIR/pki"
  case "${1:-}" in
    add)
      openssl genrsa -out "$pki/sa-next.key" 2048 2>/dev/null
      openssl rsa -in "$pki/sa-next.key" -pubout -out "$pki/sa-next.pub" 2>/dev/null
      stop_one kube-apiserver
      start_apiserver "$pki/sa-next.key" "$pki/sa.pub" "$pki/sa-next.pub"
      ;;
    drop)
      [[ -f "$pki/sa-next.key" ]] || die "rotate-key add first"
      stop_one kube-apiserver
      start_apiserver "$pki/sa-next.key" "$pki/sa-next.pub"
      ;;
    *) die "usage: $0 rotate-key add|drop" ;;
  esac
  log "kube-apiserver restarted with the $1 key set"
}

# apiserver stop|start: an API-server outage with everything else kept (etcd's data too).
cmd_apiserver() {
  [[ -f "$DIR/ports" ]] || die "not running (scripts/control-plane.sh up)"
  case "${1:-}" in
    stop) stop_one kube-apiserver ;;
    start)
      local keys
      read -r -a keys <"$DIR/apiserver-keys"
      start_apiserver "${keys[@]}"
      ;;
    *) die "usage: $0 apiserver stop|start" ;;
  esac
  log "kube-apiserver: $1"
}

cmd_up() {
  if [[ -f "$DIR/env" ]] && cmd_running; then
    log "already running ($DIR)"
    cat "$DIR/env"
    return 0
  fi
  cmd_build
  cmd_down_quiet
  rm -rf "$DIR" && mkdir -p "$DIR"/{logs,pids,etcd}
  local etcd_port etcd_peer api_port
  etcd_port=$(free_port)
  etcd_peer=$(free_port)
  api_port=$(free_port)
  local server="https://127.0.0.1:$api_port"
  gen_pki
  write_kubeconfig "$DIR/kubeconfig" "$server"
  local start_time=$SECONDS

  start etcd "$BIN/etcd" --data-dir "$DIR/etcd" --name irsa-test \
    --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "irsa-test=http://127.0.0.1:$etcd_peer" \
    --unsafe-no-fsync --quota-backend-bytes 1073741824 --log-level warn
  wait_until "$READY_TIMEOUT" "etcd to be healthy" curl -sf "http://127.0.0.1:$etcd_port/health"

  echo "$etcd_port $api_port" >"$DIR/ports"
  echo "${IRSA_CONTROL_PLANE_ISSUER:-$server}" >"$DIR/issuer"
  start_apiserver "$DIR/pki/sa.key" "$DIR/pki/sa.pub"

  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$DIR/kubeconfig" \
    --authentication-kubeconfig "$DIR/kubeconfig" --authorization-kubeconfig "$DIR/kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$(free_port)" \
    --controllers serviceaccount-controller,serviceaccount-token-controller,namespace-controller,garbage-collector-controller,root-ca-certificate-publisher-controller \
    --service-account-private-key-file "$DIR/pki/sa.key" \
    --root-ca-file "$DIR/pki/ca.crt" \
    --leader-elect=false
  # The discovery endpoints anonymously readable, as on EKS and as STS needs them.
  "$BIN/kubectl" --kubeconfig "$DIR/kubeconfig" create clusterrolebinding irsa-test-issuer-discovery \
    --clusterrole system:service-account-issuer-discovery --group system:unauthenticated >/dev/null
  # kube-controller-manager works once it has created the default ServiceAccount.
  wait_until "$READY_TIMEOUT" "kube-controller-manager to create default/default" \
    "$BIN/kubectl" --kubeconfig "$DIR/kubeconfig" -n default get serviceaccount default

  cat >"$DIR/env" <<EOF
export KUBECONFIG=$DIR/kubeconfig
export IRSA_E2E=1
export IRSA_E2E_CLUSTER_CA=$DIR/pki/ca.crt
export IRSA_E2E_CONTROL_PLANE_DIR=$DIR
export IRSA_E2E_HELM=$HELM
export IRSA_E2E_SA_PUBLIC_KEY=$DIR/pki/sa.pub
# kubectl of the same version as the API server, first on PATH.
export PATH=$BIN:\$PATH
EOF
  log "up in $((SECONDS - start_time)) s: $server (state and logs in $DIR)"
  cat "$DIR/env"
}

cmd_running() {
  local pidfile
  for pidfile in "$DIR"/pids/*; do
    [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null || return 1
  done
  [[ -n "$(ls -A "$DIR/pids" 2>/dev/null)" ]]
}

# Kills exactly the processes `up` recorded, newest first, and waits (bounded) for them.
cmd_down_quiet() {
  [[ -d "$DIR/pids" ]] || return 0
  local name
  for name in kube-controller-manager kube-apiserver etcd; do
    stop_one "$name"
  done
}

case "${1:-}" in
  build) cmd_build ;;
  up) cmd_up ;;
  env) [[ -f "$DIR/env" ]] && cmd_running || die "not running (scripts/control-plane.sh up)"; cat "$DIR/env" ;;
  down) cmd_down_quiet; log "down" ;;
  rotate-key) cmd_rotate_key "${2:-}" ;;
  apiserver) cmd_apiserver "${2:-}" ;;
  *) echo "usage: $0 build|up|env|down|rotate-key add|drop|apiserver stop|start" >&2; exit 2 ;;
esac
