#!/usr/bin/env bash
# `make demo`: the whole IRSA trip on this machine, through real parts only, each step shown
# with its evidence. AWS is played by the verifying STS (scripts/verifying-sts.sh: S3, IAM and
# an STS that really checks tokens), the cluster by a local control plane of the demo's own
# (scripts/control-plane.sh), self-managed: its issuer is an https bucket of that STS. irsa is
# installed from charts/irsa; its webhook and controller run as local processes with the
# Deployments' flags, as the chart's ServiceAccounts, since there is no kubelet to run the
# Deployments. Then config/samples/ (the grant, the binding, the ServiceAccount, the pod) get
# the pod working credentials: the controller publishes the issuer, creates the OIDC provider
# and writes the role's trust policy; the webhook injects the pod; the kubelet's part (the
# pod's token, the container's process) is done as e2e/src/kubelet.rs does it; boto3 in
# that process (e2e/tests/journeys/sdk_probe.py) assumes the role, writes and reads an S3 object.
#
#   scripts/demo.sh        run it; the last line is `demo: N steps passed`. Leaves nothing
#                          running, unless IRSA_DEMO_KEEP=1: then everything stays up and the
#                          `export` lines to use it are printed
#   scripts/demo.sh down   stop what a kept (or interrupted) demo left running
#
# Needs Go (the control plane and the STS are built from Go modules on first use, ~30 min),
# cargo, python3 with boto3 and PyYAML, openssl, curl, and root (the container's process gets
# its token through a bind mount in a private mount namespace: unshare, mount).
# State, logs and pids: ${IRSA_DEMO_DIR:-/tmp/irsa-demo}; AWS calls: scripts/demo_aws.py.
set -euo pipefail
# The ERR trap (which records why a step failed) also fires inside functions.
set -o errtrace

cd "$(dirname "$0")/.."
ROOT="$PWD"
DIR="${IRSA_DEMO_DIR:-/tmp/irsa-demo}"
PLANE_DIR="$DIR/plane"
VERIFIER_DIR="$DIR/verifier"
LOG="$DIR/logs/demo.log"
CARGO="${CARGO:-cargo}"
# Bounded waits (seconds).
WAIT="${IRSA_DEMO_TIMEOUT:-90}"

# The samples' names (config/samples/), the chart's release, the demo's AWS names.
NS=team-a SA=app POD=web CONTAINER=app BINDING=s3-reader
APP=".spec.containers[?(@.name==\"$CONTAINER\")]"
RELEASE=irsa RELEASE_NS=irsa-system
ROLE_NAME=team-a-s3-reader DATA_BUCKET=team-a-data
ISSUER_BUCKET=irsa-demo-issuer ISSUER_PREFIX=cluster
REGION=us-east-1
# Where the container finds its token: created on the host if missing, removed afterwards.
MADE_DIRS="$DIR/made-dirs"

# ---------------------------------------------------------------------------------------
# steps, failures, processes

STEP=0 STEP_DONE=0 TITLE="" LOGS=()

# step TITLE [LOG...]: starts the next step; its LOGs are shown if it fails.
step() {
  STEP=$((STEP + 1))
  TITLE=$1
  shift
  LOGS=("$@")
  : >"$DIR/evidence"
  printf '[%d] %s ...' "$STEP" "$TITLE"
}
# Evidence of the current step: say TEXT..., or `... | show`. Printed, indented, after "ok".
say() { printf '%s\n' "$@" >>"$DIR/evidence"; }
show() { cat >>"$DIR/evidence"; }
indent() { sed 's/^./  &/'; }
ok() {
  STEP_DONE=$STEP
  echo " ok"
  sed 's/^./    &/' "$DIR/evidence"
}

# fail REASON: the current step failed (the EXIT trap reports it, with the step's logs).
fail() {
  echo "$1" >"$DIR/failure"
  exit 1
}

# A command of the script that failed on its own (in the script's shell, not a $(...): that
# one's own output is in the log) is the reason.
on_err() {
  [[ "$BASHPID" == "$$" && ! -s "$DIR/failure" ]] || return 0
  echo "\`$1\` exited with status $2 (scripts/demo.sh line $3)" >"$DIR/failure"
}

on_exit() {
  local status=$?
  set +e
  trap - ERR
  if ((status == 0)); then return; fi
  ((STEP > STEP_DONE)) && echo " FAILED"
  {
    if ((STEP > STEP_DONE)); then
      echo "demo: step $STEP ($TITLE) failed: $(cat "$DIR/failure" 2>/dev/null || echo "exit status $status")"
    else
      echo "demo: failed after step $STEP: $(cat "$DIR/failure" 2>/dev/null || echo "exit status $status")"
    fi
    local log
    for log in "${LOGS[@]}" "$LOG"; do
      [[ -s "$log" ]] || continue
      echo "----- last lines of $log -----"
      tail -n 30 "$log"
    done
  } >&4
  if [[ "${IRSA_DEMO_KEEP:-}" == 1 ]]; then
    echo "demo: IRSA_DEMO_KEEP=1: left running for inspection; \`make demo-down\` stops it" >&4
  else
    cleanup
  fi
  exit "$status"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start NAME COMM COMMAND...: a background process, its log in logs/NAME.log; COMM is the
# name it runs under (/proc/PID/comm), checked before it is ever killed.
start() {
  local name=$1 comm=$2
  shift 2
  "$@" >"$DIR/logs/$name.log" 2>&1 </dev/null &
  echo "$! $comm" >"$DIR/pids/$name"
}

pid_of() { cut -d' ' -f1 "$DIR/pids/$1"; }

# Each process the demo started is still running (a wait fails at once when one exits).
check_processes() {
  local file pid comm
  for file in "$DIR"/pids/*; do
    [[ -f "$file" ]] || continue
    read -r pid comm <"$file"
    kill -0 "$pid" 2>/dev/null && continue
    LOGS+=("$DIR/logs/$(basename "$file").log")
    fail "$(basename "$file") exited"
  done
}

stop() { # name
  local file="$DIR/pids/$1" pid comm
  [[ -f "$file" ]] || return 0
  read -r pid comm <"$file"
  # Only a process that is still the one we started (the pid may have been reused).
  if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm" ]]; then
    kill "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

# wait_for SECONDS WHAT COMMAND...: polls COMMAND until it succeeds, at most SECONDS. On a
# timeout the reason ends with the output of the command WAIT_HINT names, if set.
wait_for() {
  local limit=$1 what=$2
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) ||
      fail "timed out after ${limit}s waiting for $what${WAIT_HINT:+: $($WAIT_HINT 2>&1)}"
    check_processes
    sleep 0.5
  done
}

# Stops everything a demo started, newest first. Quiet: its output goes to the log.
cleanup() {
  local name
  for name in controller webhook; do stop "$name"; done
  IRSA_CONTROL_PLANE_DIR="$PLANE_DIR" "$ROOT/scripts/control-plane.sh" down
  IRSA_VERIFIER_DIR="$VERIFIER_DIR" "$ROOT/scripts/verifying-sts.sh" down
  rm -rf "$DIR/kubelet" "$DIR/kubeconfigs"
  if [[ -f "$MADE_DIRS" ]]; then
    # Only the directories the demo created, and only if still empty.
    find "$(cat "$MADE_DIRS")" -depth -type d -empty -delete 2>/dev/null || true
    rm -f "$MADE_DIRS"
  fi
} >>"$LOG" 2>&1

# ---------------------------------------------------------------------------------------
# helpers

# The AWS calls (scripts/demo_aws.py) as the verifier's admin, to ENDPOINT.
aws_py() { # endpoint command args...
  local endpoint=$1
  shift
  AWS_ENDPOINT_URL="$endpoint" AWS_REGION="$REGION" \
    AWS_ACCESS_KEY_ID="$IRSA_E2E_VERIFIER_ACCESS_KEY_ID" \
    AWS_SECRET_ACCESS_KEY="$IRSA_E2E_VERIFIER_SECRET_ACCESS_KEY" \
    python3 "$ROOT/scripts/demo_aws.py" "$@"
}

# A CA and a serving certificate for 127.0.0.1 (the webhook's: the API server calls it there).
webhook_tls() { # dir
  mkdir -p "$1" && cd "$1"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 7 \
    -subj "/CN=irsa-demo-webhook-ca" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout tls.key -out tls.csr -subj "/CN=irsa-webhook" 2>/dev/null
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1" >tls.ext
  openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out tls.crt -days 7 \
    -extfile tls.ext 2>/dev/null
  rm -f tls.csr tls.ext
  cd "$ROOT"
}

# Splits a `helm template` rendering: the objects a cluster without a kubelet can use go to
# OUT (the webhook configuration's clientConfig pointed at URL, trusting the CA in CABUNDLE),
# the names of the others are printed.
split_chart() { # rendered out url cabundle
  python3 - "$@" <<'EOF'
import sys, yaml
rendered, out, url, ca_bundle = sys.argv[1:]
USABLE = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
          "ConfigMap", "Secret", "MutatingWebhookConfiguration"}
keep = []
for doc in yaml.safe_load_all(open(rendered)):
    if not doc:
        continue
    if doc["kind"] not in USABLE:
        print(f"{doc['kind']}/{doc['metadata']['name']}")
        continue
    if doc["kind"] == "MutatingWebhookConfiguration":
        for webhook in doc["webhooks"]:
            webhook["clientConfig"] = {"url": url, "caBundle": ca_bundle}
    keep.append(doc)
yaml.safe_dump_all(keep, open(out, "w"), sort_keys=False)
EOF
}

# What a kubelet would do for one container of a Deployment in DEPLOYMENT (a rendered file):
# writes each ConfigMap and Secret volume it mounts, as stored in the cluster, under ROOT at
# its mountPath, then prints the container's args (paths under a mountPath re-rooted under
# ROOT), one per line, then `--env--`, then its literal env as NAME=VALUE lines.
deployment_process() { # deployment root
  python3 - "$@" <<'EOF'
import base64, json, os, subprocess, sys, yaml
deployment, root = sys.argv[1:]
os.umask(0o077)  # a Secret's keys among them
pod = yaml.safe_load(open(deployment))["spec"]["template"]["spec"]
container = pod["containers"][0]
volumes = {v["name"]: v for v in pod.get("volumes", [])}
mounts = []
for mount in container.get("volumeMounts", []):
    volume = volumes[mount["name"]]
    if "configMap" in volume:
        kind, name, decode = "configmap", volume["configMap"]["name"], lambda v: v.encode()
    elif "secret" in volume:
        kind, name, decode = "secret", volume["secret"]["secretName"], base64.b64decode
    else:
        continue
    got = json.loads(subprocess.run(["kubectl", "-n", os.environ["RELEASE_NS"], "get", kind, name, "-o", "json"],
                                    check=True, capture_output=True, text=True).stdout)
    target = root + mount["mountPath"]
    os.makedirs(target, exist_ok=True)
    for key, value in (got.get("data") or {}).items():
        with open(os.path.join(target, key), "wb") as f:
            f.write(decode(value))
    mounts.append(mount["mountPath"].rstrip("/") + "/")
for arg in container["args"]:
    flag, _, value = arg.partition("=")
    if any(value.startswith(m) for m in mounts):
        arg = f"{flag}={root}{value}"
    print(arg)
print("--env--")
for env in container.get("env", []):
    print(f"{env['name']}={env['value']}")
EOF
}

# A kubeconfig for the ServiceAccount irsa-system/SA: the admin's cluster, a TokenRequest token.
kubeconfig_for() { # sa file
  local token server
  token="$(kubectl -n "$RELEASE_NS" create token "$1" --duration 24h)"
  server="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
  (umask 077 && cat >"$2") <<EOF
apiVersion: v1
kind: Config
clusters:
- name: demo
  cluster: {server: "$server", certificate-authority: "$PLANE_DIR/pki/ca.crt"}
users:
- name: $1
  user: {token: "$token"}
contexts:
- name: $1
  context: {cluster: demo, user: $1, namespace: $RELEASE_NS}
current-context: $1
EOF
}

# The parts of a pod (YAML or JSON on stdin) the webhook changes: volumes, and each container's
# mounts and env. The API server's own kube-api-access volume is left out (not irsa's).
pod_view() {
  python3 -c '
import sys, yaml
pod = yaml.safe_load(sys.stdin)
spec = pod["spec"]
ours = lambda name: not name.startswith("kube-api-access-")
view = {"volumes": [v for v in spec.get("volumes", []) if ours(v["name"])]}
for kind in ("initContainers", "containers"):
    view[kind] = [{"name": c["name"],
                   "volumeMounts": [m for m in c.get("volumeMounts", []) if ours(m["name"])],
                   "env": c.get("env", [])} for c in spec.get(kind, [])]
print(yaml.safe_dump(view, sort_keys=False, width=200), end="")'
}

# A JWT's claims (never the token itself): iss, sub, aud, exp, and what it is bound to.
token_claims() { # token file
  python3 -c '
import base64, datetime, json, sys, time
payload = open(sys.argv[1]).read().strip().split(".")[1]
claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
exp = claims["exp"]
print("iss:", claims["iss"])
print("sub:", claims["sub"])
print("aud:", json.dumps(claims["aud"]))
print("exp:", datetime.datetime.fromtimestamp(exp, datetime.timezone.utc).isoformat(), f"(in {exp - int(time.time())} s)")
pod = claims.get("kubernetes.io", {}).get("pod")
if pod:
    print("bound to pod:", pod["name"], "uid", pod["uid"])' "$1"
}

# The pod of config/samples would be injected now (a server-side dry run through the webhook).
pod_would_be_injected() {
  kubectl create --dry-run=server -o json -f "$DIR/samples/pod.yaml" | grep -q '"AWS_ROLE_ARN"'
}

# An anonymous GET over https of one of the issuer's documents (trusting the verifier's CA).
issuer_get() { curl -sf --cacert "$IRSA_E2E_VERIFIER_CA" "$1"; }
issuer_published() {
  issuer_get "$ISSUER/.well-known/openid-configuration" && issuer_get "$ISSUER/openid/v1/jwks"
}

# A JSONPath of the demo's stored pod, e.g. pod_field "$APP.name" (APP: its container).
pod_field() { kubectl -n "$NS" get pod "$POD" -o jsonpath="{$1}"; }

# `irsa doctor` on the demo's pod, as the cluster admin, against the verifier (through the
# dialect proxy, as the controller); --assume makes it call sts:AssumeRoleWithWebIdentity too.
doctor() {
  KUBECONFIG="$PLANE_DIR/kubeconfig" AWS_REGION="$REGION" \
    AWS_ACCESS_KEY_ID="$IRSA_E2E_VERIFIER_ACCESS_KEY_ID" \
    AWS_SECRET_ACCESS_KEY="$IRSA_E2E_VERIFIER_SECRET_ACCESS_KEY" \
    "$IRSA" doctor -n "$NS" --pod "$POD" --assume --webhook-configuration "$RELEASE-webhook" \
    --aws-endpoint-url "$IRSA_E2E_VERIFIER_IRSA_ENDPOINT" --issuer-ca-file "$IRSA_E2E_VERIFIER_CA"
}

binding_conditions() {
  kubectl -n "$NS" get iamrolebinding "$BINDING" \
    -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.reason}: {.message}){"\n"}{end}'
}

binding_condition() { # type
  [[ "$(kubectl -n "$NS" get iamrolebinding "$BINDING" \
    -o jsonpath="{.status.conditions[?(@.type==\"$1\")].status}")" == True ]]
}

# ---------------------------------------------------------------------------------------
# the demo

cmd_run() {
  # Whatever a previous demo left (kept or interrupted) goes first.
  cmd_down_quiet
  rm -rf "$DIR/logs" "$DIR/pids" "$DIR/files" "$DIR/samples" "$DIR/failure"
  mkdir -p "$DIR/logs" "$DIR/pids" "$DIR/files"
  : >"$LOG"
  # Every command's own output goes to the log (the failure report shows its tail); the
  # terminal gets the steps and their evidence.
  exec 4>&2 2>>"$LOG"
  trap 'on_err "$BASH_COMMAND" $? $LINENO' ERR
  trap on_exit EXIT
  trap 'fail interrupted' INT TERM

  step "build the control plane, the verifying STS (the first run builds them from Go modules, ~30 min) and irsa"
  "$ROOT/scripts/control-plane.sh" build >&2
  "$ROOT/scripts/verifying-sts.sh" build >&2
  local built
  built="$("$CARGO" build --bin irsa --message-format=json-render-diagnostics |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"
  [[ -x "$built" ]] || fail "cargo build --bin irsa named no executable"
  mkdir -p "$DIR/bin" && cp "$built" "$DIR/bin/irsa"
  IRSA="$DIR/bin/irsa"
  PYTHON="$(python3 -c 'import sys; print(sys.executable)')"
  say "$("$IRSA" --version) (copied to $IRSA), python $PYTHON"
  ok

  step "start the verifying STS (SeaweedFS: S3, IAM, an STS that checks tokens)" "$VERIFIER_DIR/logs/weed.log"
  IRSA_VERIFIER_DIR="$VERIFIER_DIR" "$ROOT/scripts/verifying-sts.sh" up >"$DIR/verifier.env"
  unset IRSA_E2E_VERIFIER_IRSA_ENDPOINT
  # shellcheck disable=SC1091
  source "$DIR/verifier.env"
  say "S3, IAM and STS: $IRSA_E2E_VERIFIER_ENDPOINT (http, what the pod uses) and $IRSA_E2E_VERIFIER_HTTPS (https)"
  [[ -n "${IRSA_E2E_VERIFIER_IRSA_ENDPOINT:-}" ]] ||
    fail "verifying-sts.sh gave no IRSA_E2E_VERIFIER_IRSA_ENDPOINT (the dialect proxy irsa must use)"
  say "irsa's endpoint: $IRSA_E2E_VERIFIER_IRSA_ENDPOINT (scripts/verifier-dialect.py: irsa writes AWS's" \
    "  trust-policy form; the proxy adds SeaweedFS's twin of each statement and hides it from irsa)"
  ok

  step "create the issuer's bucket: anyone may read the two issuer documents" "$VERIFIER_DIR/logs/weed.log"
  local policy
  policy="$(aws_py "$IRSA_E2E_VERIFIER_ENDPOINT" issuer-bucket "$ISSUER_BUCKET" "$ISSUER_PREFIX" \
    "$ROOT/config/iam/issuer-bucket-policy.json")"
  ISSUER="$IRSA_E2E_VERIFIER_HTTPS/$ISSUER_BUCKET/$ISSUER_PREFIX"
  say "bucket $ISSUER_BUCKET, policy config/iam/issuer-bucket-policy.json:"
  printf '%s\n' "$policy" | indent | show
  say "the cluster's issuer will be $ISSUER (empty so far: GET .well-known/openid-configuration" \
    "  answers $(curl -s -o /dev/null -w '%{http_code}' --cacert "$IRSA_E2E_VERIFIER_CA" \
      "$ISSUER/.well-known/openid-configuration"))"
  ok

  step "start a control plane whose service-account issuer is that bucket" "$PLANE_DIR"/logs/kube-apiserver.log
  IRSA_CONTROL_PLANE_DIR="$PLANE_DIR" IRSA_CONTROL_PLANE_ISSUER="$ISSUER" \
    "$ROOT/scripts/control-plane.sh" up >"$DIR/plane.env"
  # shellcheck disable=SC1091
  source "$DIR/plane.env"
  HELM="$IRSA_E2E_HELM"
  local server discovery issuer jwks_uri
  server="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
  discovery="$(kubectl get --raw /.well-known/openid-configuration)"
  issuer="$(sed -n 's/.*"issuer":"\([^"]*\)".*/\1/p' <<<"$discovery")"
  jwks_uri="$(sed -n 's/.*"jwks_uri":"\([^"]*\)".*/\1/p' <<<"$discovery")"
  [[ "$issuer" == "$ISSUER" ]] || fail "the API server's issuer is $issuer, not $ISSUER"
  [[ "$jwks_uri" == "$ISSUER/openid/v1/jwks" ]] ||
    fail "the API server's jwks_uri is $jwks_uri, not under the issuer $ISSUER"
  say "etcd, kube-apiserver $server, kube-controller-manager ($(kubectl version -o json |
    sed -n 's/.*"gitVersion": "\([^"]*\)".*/\1/p' | tail -n 1)); no kubelet, no scheduler: pods stay Pending"
  say "the API server signs ServiceAccount tokens for issuer $issuer, keys at $jwks_uri"
  ok

  step "install irsa from charts/irsa" "$DIR/logs/webhook.log" "$DIR/logs/controller.log"
  local files="$DIR/files" webhook_port webhook_metrics controller_metrics
  webhook_port="$(free_port)" webhook_metrics="$(free_port)" controller_metrics="$(free_port)"
  webhook_tls "$files/webhook-tls"
  base64 -w0 "$files/webhook-tls/ca.crt" >"$files/webhook-tls/ca.b64"
  local values=(
    --set controller.clusterName=demo
    --set controller.issuerUrl="$ISSUER"
    --set-file controller.issuerCA="$IRSA_E2E_VERIFIER_CA"
    --set controller.awsRegion="$REGION"
    --set controller.awsEndpointUrl="$IRSA_E2E_VERIFIER_IRSA_ENDPOINT"
    --set controller.leaderElection=false
    --set controller.publishIssuer.s3Url="s3://$ISSUER_BUCKET/$ISSUER_PREFIX"
    --set controller.publishIssuer.publicUrl="$ISSUER"
    --set controller.publishIssuer.interval=2s
    --set webhook.awsDefaultRegion="$REGION"
    --set tls.mode=existingSecret
    --set tls.existingSecret.name=irsa-webhook-demo-tls
    --set-file tls.existingSecret.caBundle="$files/webhook-tls/ca.b64"
    --set logFormat=text
  )
  "$HELM" template "$RELEASE" "$ROOT/charts/irsa" -n "$RELEASE_NS" "${values[@]}" >"$files/chart.yaml"
  local skipped applied
  skipped="$(split_chart "$files/chart.yaml" "$files/apply.yaml" \
    "https://127.0.0.1:$webhook_port/mutate" "$(cat "$files/webhook-tls/ca.b64")")"
  # What `helm install --create-namespace` does first: the namespace and the chart's crds/.
  applied="$(kubectl create namespace "$RELEASE_NS")"
  applied+=$'\n'"$(kubectl apply -f "$ROOT/charts/irsa/crds/irsa.dev.yaml")"
  kubectl wait --for condition=Established --timeout "${WAIT}s" -f "$ROOT/charts/irsa/crds/irsa.dev.yaml" >&2
  # tls.mode=existingSecret: the serving certificate is the demo's, for 127.0.0.1.
  applied+=$'\n'"$(kubectl -n "$RELEASE_NS" create secret tls irsa-webhook-demo-tls \
    --cert "$files/webhook-tls/tls.crt" --key "$files/webhook-tls/tls.key")"
  applied+=$'\n'"$(kubectl apply -f "$files/apply.yaml")"
  say "helm template $RELEASE charts/irsa -n $RELEASE_NS --set controller.clusterName=demo, issuerUrl, issuerCA," \
    "  awsEndpointUrl, awsRegion, leaderElection=false, publishIssuer (s3Url, publicUrl, interval=2s);" \
    "  webhook.awsDefaultRegion; tls.mode=existingSecret (a certificate for 127.0.0.1 made with openssl)" \
    "applied (the webhook's clientConfig pointed at https://127.0.0.1:$webhook_port/mutate):"
  printf '%s\n' "$applied" | indent | show
  say "not applied (they need a kubelet, a scheduler or the cluster network):" "  ${skipped//$'\n'/, }"
  say "no kubelet here: the Deployments' containers run as processes, with their args (paths and" \
    "  listen addresses made local), as the chart's ServiceAccounts (TokenRequest tokens):"

  mkdir -p "$DIR/kubeconfigs"
  local component line args env
  for component in webhook controller; do
    kubeconfig_for "$RELEASE-$component" "$DIR/kubeconfigs/$component"
    "$HELM" template "$RELEASE" "$ROOT/charts/irsa" -n "$RELEASE_NS" "${values[@]}" \
      --show-only "templates/$component-deployment.yaml" >"$files/$component-deployment.yaml"
    args=() env=("KUBECONFIG=$DIR/kubeconfigs/$component")
    local in_env=0
    while IFS= read -r line; do
      if [[ "$line" == --env-- ]]; then in_env=1; continue; fi
      if ((in_env)); then env+=("$line"); continue; fi
      case "$component:$line" in
        webhook:--listen=*) line="--listen=127.0.0.1:$webhook_port" ;;
        webhook:--metrics-listen=*) line="--metrics-listen=127.0.0.1:$webhook_metrics" ;;
        controller:--metrics-listen=*) line="--metrics-listen=127.0.0.1:$controller_metrics" ;;
      esac
      args+=("$line")
    done < <(RELEASE_NS="$RELEASE_NS" deployment_process "$files/$component-deployment.yaml" "$files/root")
    ((${#args[@]} > 0)) || fail "no args in the chart's $component Deployment"
    if [[ "$component" == controller ]]; then
      # The controller's AWS identity: the verifier's admin keys (on EKS: its IAM role).
      env+=("AWS_ACCESS_KEY_ID=$IRSA_E2E_VERIFIER_ACCESS_KEY_ID"
        "AWS_SECRET_ACCESS_KEY=$IRSA_E2E_VERIFIER_SECRET_ACCESS_KEY")
    fi
    start "$component" irsa env "${env[@]}" "$IRSA" "${args[@]}"
    say "  irsa ${args[*]}" "    (pid $(pid_of "$component"), log $DIR/logs/$component.log)"
  done
  wait_for "$WAIT" "the webhook to be ready" curl -sf "http://127.0.0.1:$webhook_metrics/readyz"
  wait_for "$WAIT" "the controller to be ready" curl -sf "http://127.0.0.1:$controller_metrics/readyz"
  ok

  step "the controller publishes the issuer to the bucket" "$DIR/logs/controller.log"
  local discovery_url="$ISSUER/.well-known/openid-configuration" discovery jwks
  # Anonymous GETs over https, as STS makes them; the publisher writes one document, then the other.
  wait_for "$WAIT" "$discovery_url and the JWKS" issuer_published
  discovery="$(issuer_get "$discovery_url")"
  jwks="$(issuer_get "$ISSUER/openid/v1/jwks")"
  say "anonymous GET $discovery_url:"
  python3 -m json.tool --indent 2 <<<"$discovery" | indent | show
  say "anonymous GET $ISSUER/openid/v1/jwks: keys $(python3 -c '
import json, sys; print(", ".join(k["kid"] for k in json.load(sys.stdin)["keys"]))' <<<"$jwks")"
  ok

  step "create the IAM role $ROLE_NAME and its data bucket (what the AWS admin does)" "$VERIFIER_DIR/logs/weed.log"
  aws_py "$IRSA_E2E_VERIFIER_ENDPOINT" role "$ROLE_NAME" "$DATA_BUCKET"
  # (The verifier itself reports arn:aws:iam::role/NAME, without the account; its STS takes both.)
  ROLE_ARN="arn:aws:iam::$IRSA_E2E_VERIFIER_ACCOUNT:role/$ROLE_NAME"
  say "role $ROLE_ARN: trusts an unrelated EC2 statement, may s3:PutObject/GetObject on $DATA_BUCKET/*"
  ok

  step "apply config/samples/: the grant, the binding, the ServiceAccount" "$DIR/logs/controller.log"
  mkdir -p "$DIR/samples"
  local sample
  for sample in grant binding serviceaccount pod; do
    # The samples' account is 111122223333; the role is in the verifier's.
    sed -e "s/arn:aws:iam::111122223333:/arn:aws:iam::$IRSA_E2E_VERIFIER_ACCOUNT:/g" \
      "$ROOT/config/samples/$sample.yaml" >"$DIR/samples/$sample.yaml"
  done
  applied="$(kubectl create namespace "$NS")"
  applied+=$'\n'"$(kubectl apply -f "$DIR/samples/grant.yaml" -f "$DIR/samples/binding.yaml" \
    -f "$DIR/samples/serviceaccount.yaml")"
  say "config/samples/ with the role ARNs in the verifier's account (sed s/111122223333/$IRSA_E2E_VERIFIER_ACCOUNT/)"
  say "applied:"
  printf '%s\n' "$applied" | indent | show
  ok

  step "the controller creates the OIDC provider" "$DIR/logs/controller.log"
  wait_for "$WAIT" "the OIDC provider of $ISSUER" aws_py "$IRSA_E2E_VERIFIER_ENDPOINT" provider "$ISSUER"
  aws_py "$IRSA_E2E_VERIFIER_ENDPOINT" provider "$ISSUER" | show
  ok

  step "the controller writes the role's trust policy" "$DIR/logs/controller.log"
  WAIT_HINT=binding_conditions wait_for "$WAIT" "binding $NS/$BINDING to be Ready" binding_condition Ready
  say "binding $NS/$BINDING: $(kubectl -n "$NS" get iamrolebinding "$BINDING" \
    -o jsonpath='{range .status.conditions[*]}{.type}={.status}{" "}{end}' | sed 's/ $//')"
  say "trust policy of $ROLE_NAME, as irsa wrote it (read through the dialect proxy):"
  aws_py "$IRSA_E2E_VERIFIER_IRSA_ENDPOINT" trust-policy "$ROLE_NAME" | indent | show
  ok

  step "the webhook injects the pod (config/samples/pod.yaml)" "$DIR/logs/webhook.log"
  wait_for "$WAIT" "the webhook to inject a dry-run pod" pod_would_be_injected
  kubectl create -f "$DIR/samples/pod.yaml" >&2
  kubectl -n "$NS" get pod "$POD" -o json >"$DIR/files/pod-stored.json"
  pod_view <"$DIR/samples/pod.yaml" >"$DIR/files/pod-sent.yaml"
  pod_view <"$DIR/files/pod-stored.json" >"$DIR/files/pod-stored.yaml"
  local role_in_pod
  role_in_pod="$(pod_field "$APP.env[?(@.name==\"AWS_ROLE_ARN\")].value")"
  [[ "$role_in_pod" == "$ROLE_ARN" ]] ||
    fail "the stored pod's $CONTAINER container has AWS_ROLE_ARN=${role_in_pod:-(none)}, not $ROLE_ARN"
  say "the pod as sent vs as stored (volumes, mounts, env; the API server's kube-api-access volume left out):"
  diff -u --label "sent: config/samples/pod.yaml" --label "stored: kubectl get pod $POD" \
    "$DIR/files/pod-sent.yaml" "$DIR/files/pod-stored.yaml" | indent | show || true
  ok

  step "the kubelet's part: a token for the pod (TokenRequest bound to it)"
  local token_file mount_dir volume aud expiry path uid
  token_file="$(pod_field "$APP.env[?(@.name==\"AWS_WEB_IDENTITY_TOKEN_FILE\")].value")"
  mount_dir="$(dirname "$token_file")"
  volume="$(pod_field "$APP.volumeMounts[?(@.mountPath==\"$mount_dir\")].name")"
  [[ -n "$volume" ]] || fail "no volume of the $CONTAINER container is mounted at $mount_dir"
  local src=".spec.volumes[?(@.name==\"$volume\")].projected.sources[0].serviceAccountToken"
  aud="$(pod_field "$src.audience")"
  expiry="$(pod_field "$src.expirationSeconds")"
  path="$(pod_field "$src.path")"
  uid="$(pod_field .metadata.uid)"
  # The token stands for the kubelet's projected volume (private: it is a credential).
  install -d -m 700 "$DIR/kubelet" && mkdir -p "$DIR/kubelet/$volume"
  kubectl -n "$NS" create token "$SA" --audience "$aud" --duration "${expiry}s" \
    --bound-object-kind Pod --bound-object-name "$POD" --bound-object-uid "$uid" \
    >"$DIR/kubelet/$volume/$path"
  say "projected volume $volume (audience $aud, ${expiry}s, path $path), mounted at $mount_dir;" \
    "kubectl create token $SA --audience $aud --duration ${expiry}s --bound-object-kind Pod" \
    "  --bound-object-name $POD --bound-object-uid $uid, as the kubelet asks for it;" \
    "its claims:"
  token_claims "$DIR/kubelet/$volume/$path" | indent | show
  ok

  step "the container's process (boto3) gets credentials, writes and reads an object"
  local container_env
  mapfile -t container_env < <(kubectl -n "$NS" get pod "$POD" \
    -o jsonpath="{range $APP.env[*]}{.name}={.value}{'\n'}{end}")
  # The mount point exists on the host (as in the container image); made here if missing.
  local missing="" dir="$mount_dir"
  while [[ ! -e "$dir" ]]; do missing="$dir" dir="$(dirname "$dir")"; done
  [[ -z "$missing" ]] || echo "$missing" >"$MADE_DIRS"
  mkdir -p "$mount_dir"
  local probe
  # A private mount namespace: the token appears at the mountPath for this process only,
  # which runs with exactly the container's env plus the endpoint override.
  # shellcheck disable=SC2016 # the inner script's own arguments
  probe="$(unshare --mount --propagation private sh -c 'mount --bind "$1" "$2" && shift 2 && exec env -i "$@"' \
    sh "$DIR/kubelet/$volume" "$mount_dir" "${container_env[@]}" \
    AWS_ENDPOINT_URL="$IRSA_E2E_VERIFIER_ENDPOINT" \
    "$PYTHON" "$ROOT/e2e/tests/journeys/sdk_probe.py" "$DATA_BUCKET" hello.txt)" ||
    fail "sdk_probe.py: ${probe:-no report}"$'\n'"what irsa doctor makes of it:"$'\n'"$(doctor 2>&1)"
  [[ "$probe" == *":assumed-role/$ROLE_NAME/"* ]] || fail "sdk_probe.py is not the role: $probe"
  say "env -i $(printf '%s ' "${container_env[@]%%=*}")AWS_ENDPOINT_URL \\" \
    "  $PYTHON e2e/tests/journeys/sdk_probe.py $DATA_BUCKET hello.txt" \
    "  (in a private mount namespace, the token bind-mounted at $mount_dir):"
  python3 -c '
import json, sys
report = json.loads(sys.stdin.read().strip().splitlines()[-1])
print("sts:GetCallerIdentity:", report["arn"])
print("s3:PutObject then s3:GetObject:", repr(report["object"]))' <<<"$probe" | indent | show
  ok

  step "the doctor agrees (irsa doctor -n $NS --pod $POD --assume)"
  local report
  report="$(doctor)" || fail "irsa doctor found a problem:"$'\n'"$report"
  say "$report"
  ok

  if [[ "${IRSA_DEMO_KEEP:-}" == 1 ]]; then
    echo "IRSA_DEMO_KEEP=1: everything stays up (\`make demo-down\` stops it). To use it:"
    echo "export PATH=$(dirname "$(command -v kubectl)"):\$PATH"
    echo "export KUBECONFIG=$PLANE_DIR/kubeconfig"
    echo "export AWS_ENDPOINT_URL=$IRSA_E2E_VERIFIER_ENDPOINT"
    echo "export AWS_REGION=$REGION"
    echo "export IRSA_DEMO_ROLE_ARN=$ROLE_ARN"
    echo "export IRSA_DEMO_NAMESPACE=$NS"
    echo "export IRSA_DEMO_SERVICE_ACCOUNT=$SA"
    echo "# the verifier's admin, for the aws CLI or boto3:"
    echo "#   AWS_ACCESS_KEY_ID=$IRSA_E2E_VERIFIER_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$IRSA_E2E_VERIFIER_SECRET_ACCESS_KEY"
  else
    cleanup
  fi
  trap - EXIT
  echo "demo: $STEP steps passed"
}

cmd_down_quiet() {
  mkdir -p "$DIR/logs"
  touch "$LOG"
  cleanup
}

case "${1:-run}" in
  run) cmd_run ;;
  down) cmd_down_quiet; echo "demo: down (nothing of the demo is running)" ;;
  *) echo "usage: $0 [run|down]" >&2; exit 2 ;;
esac
