#!/usr/bin/env bash
# The controller at scale: `irsa controller` (release build) against a fresh local control plane
# (scripts/with-control-plane.sh) and moto for IAM/STS, everything on 127.0.0.1. Not a test: it
# prints numbers, and one summary line last.
#
# Phases, the controller running from the start (leader election off, a short resync):
#   serviceaccounts  BENCH_SERVICE_ACCOUNTS over BENCH_NAMESPACES namespaces, one in ten
#                    annotated with a role (the controller trusts those too): RSS growth per
#                    ServiceAccount;
#   bindings         BENCH_BINDINGS IAMRoleBindings of one ServiceAccount each, spread over
#                    BENCH_ROLES roles (which exist in moto, each with a foreign statement), and
#                    one grant allowing them all: seconds until every binding is Ready, IAM
#                    reads and writes (from the controller's own per-call counter), binding
#                    reconciles per binding, the API server's write requests, RSS growth per
#                    binding;
#   burst            BENCH_BURST bindings edited at once (a second ServiceAccount each), on a
#                    tenth of the roles: IAM writes, which must not exceed the roles touched;
#   steady           BENCH_STEADY_RESYNCS resync intervals with nothing changing: IAM writes
#                    (0 expected) and reads.
# Then the trust policies: the largest, how many roles trust a whole namespace (compacted) and
# how many bindings were refused for size; and every role's foreign statement, which must be
# intact.
#
# BENCH_SCALE=full (default): 1,000 roles, 10,000 bindings, 500 namespaces, 100,000
# ServiceAccounts, a burst of 1,000. BENCH_SCALE=small: a tenth of each, a few minutes.
# Other knobs (env): BENCH_PARALLEL (6 kubectl processes), BENCH_RESYNC (20s),
# BENCH_STEADY_RESYNCS (3), BENCH_METRICS_PORT (19291), BENCH_MOTO_PORT (15223),
# BENCH_IRSA_BIN (a release binary to use instead of building one), IRSA_CONTROL_PLANE_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${BENCH_CONTROLLER_IN_PLANE:-}" ]]; then
    BENCH_CONTROLLER_IN_PLANE=1 exec ./scripts/with-control-plane.sh "$0" "$@"
fi

case "${BENCH_SCALE:-full}" in
full) ROLES=1000 BINDINGS=10000 NAMESPACES=500 SAS=100000 BURST=1000 ;;
small) ROLES=100 BINDINGS=1000 NAMESPACES=50 SAS=10000 BURST=100 ;;
*) echo "BENCH_SCALE is full or small" >&2; exit 2 ;;
esac
ROLES=${BENCH_ROLES:-$ROLES}
BINDINGS=${BENCH_BINDINGS:-$BINDINGS}
NAMESPACES=${BENCH_NAMESPACES:-$NAMESPACES}
SAS=${BENCH_SERVICE_ACCOUNTS:-$SAS}
BURST=${BENCH_BURST:-$BURST}
PARALLEL=${BENCH_PARALLEL:-6}
RESYNC=${BENCH_RESYNC:-20s}
STEADY_RESYNCS=${BENCH_STEADY_RESYNCS:-3}
MPORT=${BENCH_METRICS_PORT:-19291}
MOTO_PORT=${BENCH_MOTO_PORT:-15223}
ACCOUNT=123456789012 # moto's
CHUNK=500

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
bench_require kubectl moto_server python3 curl

bench_controller_setup

# The objects, as Lists of CHUNK: namespaces, ServiceAccounts, the grant, the bindings, the
# burst's edits; and the roles, created in moto. Binding j names ServiceAccount k(j) in its
# namespace; the annotated ServiceAccounts are the others of every tenth index.
python3 - "$WORK" "$ROLES" "$BINDINGS" "$NAMESPACES" "$SAS" "$BURST" "$CHUNK" "$ACCOUNT" \
    "http://127.0.0.1:$MOTO_PORT" <<'PY'
import json, os, sys
import boto3
work, roles, bindings, nss, sas, burst, chunk = sys.argv[1], *map(int, sys.argv[2:8])
account, endpoint = sys.argv[8], sys.argv[9]

def role(r): return f"arn:aws:iam::{account}:role/bench-{r}"
def sa_of(j): return (j // 9) * 10 + j % 9          # never an index ending in 9
def ns(k): return f"bench-{k % nss}"

def write(phase, objs):
    os.makedirs(f"{work}/{phase}", exist_ok=True)
    for i in range(0, len(objs), chunk):
        with open(f"{work}/{phase}/{i:08d}.json", "w") as f:
            json.dump({"apiVersion": "v1", "kind": "List", "items": objs[i:i + chunk]}, f)

assert sa_of(bindings - 1) < sas, "BENCH_SERVICE_ACCOUNTS too small for BENCH_BINDINGS"
write("namespaces", [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"bench-{n}"}}
                     for n in range(nss)])
def sa(k):
    meta = {"name": f"sa-{k}", "namespace": ns(k)}
    if k % 10 == 9:
        meta["annotations"] = {"eks.amazonaws.com/role-arn": role(k % roles)}
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}
write("serviceaccounts", [sa(k) for k in range(sas)])
write("grant", [{"apiVersion": "irsa.dev/v1alpha1", "kind": "IAMRoleGrant",
                 "metadata": {"name": "bench"},
                 "spec": {"namespaces": ["bench-*"], "roleArns": [f"arn:aws:iam::{account}:role/bench-*"],
                          "allowNamespaceWildcardTrust": True}}])
# The burst gives a binding a second ServiceAccount of its namespace that no binding lists
# (above every one they list) and that is not annotated: the same index modulo 10 and nss.
step = 10 * nss
spare = ((sa_of(bindings - 1) + step) // step) * step
def binding(j, extra=False):
    k = sa_of(j)
    names = [f"sa-{k}"] + ([f"sa-{k + spare}"] if extra else [])
    return {"apiVersion": "irsa.dev/v1alpha1", "kind": "IAMRoleBinding",
            "metadata": {"name": f"b-{j}", "namespace": ns(k)},
            "spec": {"roleArn": role(j % roles), "serviceAccounts": names}}
write("bindings", [binding(j) for j in range(bindings)])
# The burst: bindings of the first tenth of the roles, each given its spare ServiceAccount.
tenth = max(1, roles // 10)
edited = [j for j in range(bindings) if j % roles < tenth and sa_of(j) + spare < sas][:burst]
write("burst", [binding(j, extra=True) for j in edited])
with open(f"{work}/burst-roles", "w") as f:
    f.write(str(len({j % roles for j in edited})))

iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
foreign = {"Sid": "Ec2", "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
           "Action": "sts:AssumeRole"}
for r in range(roles):
    iam.create_role(RoleName=f"bench-{r}", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [foreign]}))
PY

# create PHASE: every List of the phase, PARALLEL kubectl processes at once.
create() {
    find "$WORK/$1" -name '*.json' -print0 |
        xargs -0 -P "$PARALLEL" -I{} sh -c 'kubectl create -f "$1" >/dev/null' _ {}
}
apply() {
    find "$WORK/$1" -name '*.json' -print0 |
        xargs -0 -P "$PARALLEL" -I{} sh -c \
            'kubectl apply --server-side --force-conflicts --field-manager=bench -f "$1" >/dev/null' _ {}
}
# metric NAME FILTER: the sum of the controller's series of NAME whose labels match FILTER.
metric() {
    curl -fsS "http://127.0.0.1:$MPORT/metrics" |
        awk -v name="$1" -v filter="$2" '$1 ~ "^" name "({|$)" && $1 ~ filter { n += $2 } END { printf "%d\n", n }'
}
iam_writes() { metric irsa_controller_iam_calls_total 'operation="(UpdateAssumeRolePolicy|CreateOpenIDConnectProvider|AddClientIDToOpenIDConnectProvider|UpdateOpenIDConnectProviderThumbprint)"'; }
iam_reads() { metric irsa_controller_iam_calls_total 'operation="(GetRole|ListOpenIDConnectProviders|GetOpenIDConnectProvider|GetCallerIdentity)"'; }
# The API server's write requests (everything but the bench's creates and applies): status,
# finalizers, ServiceAccount annotations, Events, the controller's own.
api_writes() {
    kubectl get --raw /metrics |
        awk '/^apiserver_request_total\{/ && /verb="(PATCH|PUT|UPDATE|DELETE)"|resource="events"/ &&
             !/resource="(namespaces|leases)"/ { n += $NF } END { printf "%d\n", n }'
}
ready_bindings() {
    kubectl get iamrolebindings -A --chunk-size=1000 \
        -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
        grep -c '^True$' || true
}
not_ready_reasons() {
    kubectl get iamrolebindings -A --chunk-size=1000 \
        -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].reason}{"\n"}{end}' |
        sort | uniq -c | grep -v ' TrustPolicyApplied$' || true
}
# wait_ready N LIMIT_S: until N bindings are Ready (or the limit, then the reasons and exit).
wait_ready() {
    local deadline=$((SECONDS + $2))
    while [[ $(ready_bindings) -lt $1 ]]; do
        kill -0 "$PID" 2>/dev/null || { tail -20 "$WORK/controller.log" >&2; exit 1; }
        if [[ $SECONDS -ge $deadline ]]; then
            echo "only $(ready_bindings) of $1 bindings Ready after $2 s; not Ready:" >&2
            not_ready_reasons >&2
            exit 1
        fi
        # Listing every binding is itself work for the API server: less often at scale.
        sleep $(($1 > 2000 ? 5 : 1))
    done
}
resync_s=$(python3 -c "import re,sys; v=sys.argv[1]; print(int(v[:-1]) * {'s': 1, 'm': 60}[v[-1]])" "$RESYNC")
# wait_iam_quiet: until the controller made no IAM write for a resync interval (the burst has
# settled). A shorter quiet time is not enough at scale: a pass over a thousand roles can
# spend several seconds on reads between two writes.
wait_iam_quiet() {
    local last now quiet=0
    last=$(iam_writes)
    while [[ $quiet -lt $resync_s ]]; do
        sleep 1
        now=$(iam_writes)
        if [[ $now == "$last" ]]; then quiet=$((quiet + 1)); else quiet=0 last=$now; fi
    done
}
rss_kb() { proc_kb VmRSS; }

kubectl apply --server-side -f crds/irsa.dev.yaml >/dev/null
kubectl wait --for condition=established --timeout=60s crd/iamrolebindings.irsa.dev crd/iamrolegrants.irsa.dev >/dev/null
create namespaces

# --issuer-ca-file: the plane's issuer is under its own CA; with it the thumbprint is pinned
# and the controller logs no warning about it.
"$BIN" controller --cluster-name bench --leader-election false \
    --issuer-ca-file "$IRSA_E2E_CLUSTER_CA" \
    --aws-endpoint-url "http://127.0.0.1:$MOTO_PORT" --resync-interval "$RESYNC" \
    --metrics-listen "127.0.0.1:$MPORT" --log-format json >"$WORK/controller.log" 2>&1 &
PID=$!
for _ in $(seq 1 600); do curl -fsS "http://127.0.0.1:$MPORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$MPORT/readyz" >/dev/null || { tail -20 "$WORK/controller.log" >&2; exit 1; }
RSS_IDLE=$(rss_kb)

t0=$SECONDS
create serviceaccounts
SA_CREATE_S=$((SECONDS - t0))
sleep 5 # the watch catches up with the last creates; RSS is read after that, not a sync point
RSS_SAS=$(rss_kb)

create grant
writes0=$(iam_writes) reads0=$(iam_reads) api0=$(api_writes)
reconciles0=$(metric irsa_controller_reconciles_total 'kind="binding"')
t0=$SECONDS
create bindings
CREATE_S=$((SECONDS - t0))
wait_ready "$BINDINGS" 3600
CONVERGE_S=$((SECONDS - t0))
wait_iam_quiet
WRITES=$(($(iam_writes) - writes0)) READS=$(($(iam_reads) - reads0)) API=$(($(api_writes) - api0))
RECONCILES=$(($(metric irsa_controller_reconciles_total 'kind="binding"') - reconciles0))
RSS_BINDINGS=$(rss_kb)
WARNINGS=$(grep -c '"level":"WARN"' "$WORK/controller.log" || true)

writes1=$(iam_writes) reads1=$(iam_reads)
t0=$SECONDS
apply burst
wait_iam_quiet
BURST_S=$((SECONDS - t0 - resync_s)) # the last write, not the end of the quiet time
BURST_WRITES=$(($(iam_writes) - writes1)) BURST_READS=$(($(iam_reads) - reads1))
BURST_ROLES=$(cat "$WORK/burst-roles")

writes2=$(iam_writes) reads2=$(iam_reads)
steady=$((resync_s * STEADY_RESYNCS))
sleep "$steady" # the measured interval itself: nothing changes, the resyncs run
STEADY_WRITES=$(($(iam_writes) - writes2)) STEADY_READS=$(($(iam_reads) - reads2))
PEAK=$(proc_kb VmHWM)

# The roles as IAM holds them: sizes, compaction, foreign statements intact.
read -r LARGEST COMPACTED FOREIGN_LOST < <(python3 - "$ROLES" "http://127.0.0.1:$MOTO_PORT" <<'PY'
import json, sys, urllib.parse
import boto3
roles, endpoint = int(sys.argv[1]), sys.argv[2]
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
largest = compacted = lost = 0
for r in range(roles):
    doc = iam.get_role(RoleName=f"bench-{r}")["Role"]["AssumeRolePolicyDocument"]
    if isinstance(doc, str):
        doc = json.loads(urllib.parse.unquote(doc))
    largest = max(largest, len(json.dumps(doc, separators=(",", ":"))))
    text = json.dumps(doc)
    compacted += ":*\"" in text
    lost += not any(s.get("Sid") == "Ec2" and s.get("Principal") == {"Service": "ec2.amazonaws.com"}
                    for s in doc["Statement"])
print(largest, compacted, lost)
PY
)
REFUSED=$(kubectl get iamrolebindings -A --chunk-size=1000 \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="TrustPolicyApplied")].reason}{"\n"}{end}' |
    grep -c '^TrustPolicyTooLarge$' || true)

per() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b ? a / b : 0 }'; }
growth() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }'; }
echo
echo "irsa controller at scale, $(date -u '+%F %H:%M') UTC, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$ROLES roles, $BINDINGS bindings, $NAMESPACES namespaces, $SAS ServiceAccounts ($((SAS / 10)) annotated)"
printf '%-44s %s\n' \
    "ServiceAccounts created (s)" "$SA_CREATE_S" \
    "bindings created (s)" "$CREATE_S" \
    "bindings all Ready after (s, from the first create)" "$CONVERGE_S" \
    "IAM writes (total, per role)" "$WRITES, $(per "$WRITES" "$ROLES")" \
    "IAM reads (total, per role)" "$READS, $(per "$READS" "$ROLES")" \
    "API-server writes (status, finalizers, SAs, Events)" "$API" \
    "binding reconciles (total, per binding)" "$RECONCILES, $(per "$RECONCILES" "$BINDINGS")" \
    "controller warnings logged" "$WARNINGS" \
    "burst: bindings edited, roles touched" "$BURST, $BURST_ROLES" \
    "burst: IAM writes, reads, settled after (s)" "$BURST_WRITES, $BURST_READS, $BURST_S" \
    "steady: IAM writes, reads over ${steady} s" "$STEADY_WRITES, $STEADY_READS" \
    "RSS idle, with the SAs, with the bindings" "$(mib "$RSS_IDLE"), $(mib "$RSS_SAS"), $(mib "$RSS_BINDINGS")" \
    "peak RSS" "$(mib "$PEAK")" \
    "growth per ServiceAccount, per binding (bytes)" "$(growth "$RSS_IDLE" "$RSS_SAS" "$SAS"), $(growth "$RSS_SAS" "$RSS_BINDINGS" "$BINDINGS")" \
    "largest trust policy (chars)" "$LARGEST" \
    "roles compacted (a namespace wildcard)" "$COMPACTED" \
    "bindings refused for size" "$REFUSED" \
    "roles whose foreign statement changed" "$FOREIGN_LOST"
if [[ $WARNINGS -gt 0 ]]; then
    echo "the warnings, by message:"
    grep '"level":"WARN"' "$WORK/controller.log" |
        python3 -c 'import collections, json, sys
c = collections.Counter(json.loads(l).get("fields", {}).get("message", "?") for l in sys.stdin)
for m, n in c.most_common(5): print(f"  {n} x {m}")'
fi
[[ $FOREIGN_LOST == 0 ]] || { echo "a foreign statement was lost" >&2; exit 1; }
[[ $BURST_WRITES -le $BURST_ROLES ]] || echo "burst: more IAM writes than roles touched" >&2
echo "bindings $BINDINGS roles $ROLES converge_s $CONVERGE_S iam_writes $WRITES burst_writes $BURST_WRITES steady_writes $STEADY_WRITES rss_mib $(awk -v k="$PEAK" 'BEGIN { printf "%.1f", k / 1024 }')"
