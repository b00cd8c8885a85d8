#!/usr/bin/env bash
# Load benchmark of `irsa webhook` (docs/design.md §7), all on 127.0.0.1, stops by itself.
#
# Builds the release binary, makes a self-signed certificate (openssl), starts the webhook in
# its test/bench mode (`--service-accounts-file`: ServiceAccounts from a file, no Kubernetes),
# and drives POST /mutate with h2load (nghttp2-client) over kept-alive HTTP/2 TLS connections:
#   1. throughput at saturation,
#   2. latency at a fixed 1000 req/s (client-side p50/p99 from h2load's per-request log,
#      server-side share under 1ms from the webhook's own histogram),
#   3. the server's idle RSS and peak RSS (VmRSS / VmHWM from /proc).
#
# Knobs (env): BENCH_PORT (18443), BENCH_METRICS_PORT (19090), BENCH_SECONDS (15),
# BENCH_SERVICE_ACCOUNTS (10000, one in ten annotated).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${BENCH_PORT:-18443}
MPORT=${BENCH_METRICS_PORT:-19090}
SECONDS_PER_RUN=${BENCH_SECONDS:-15}
N_SA=${BENCH_SERVICE_ACCOUNTS:-10000}

command -v h2load >/dev/null || { echo "h2load not found: apt-get install -y nghttp2-client" >&2; exit 1; }
command -v openssl >/dev/null || { echo "openssl not found" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl not found" >&2; exit 1; }

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
bench_setup

# N_SA ServiceAccounts over 100 namespaces, every tenth with a role; the benchmarked pod runs
# as bench/app. JSON: the YAML parser's node budget stops short of 100k manifests.
awk -v n="$N_SA" 'BEGIN {
    printf "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[\n"
    printf "{\"metadata\":{\"namespace\":\"bench\",\"name\":\"app\",\"annotations\":{\"eks.amazonaws.com/role-arn\":\"arn:aws:iam::111122223333:role/bench-app\",\"eks.amazonaws.com/sts-regional-endpoints\":\"true\",\"irsa.dev/region\":\"eu-west-1\"}}}"
    for (i = 1; i < n; i++) {
        if (i % 10 == 0)
            printf ",\n{\"metadata\":{\"namespace\":\"ns-%d\",\"name\":\"sa-%d\",\"annotations\":{\"eks.amazonaws.com/role-arn\":\"arn:aws:iam::111122223333:role/r-%d\"}}}", i % 100, i, i
        else
            printf ",\n{\"metadata\":{\"namespace\":\"ns-%d\",\"name\":\"sa-%d\"}}", i % 100, i
    }
    printf "\n]}\n"
}' > "$WORK/serviceaccounts.json"

# A realistic review: a Deployment's pod with an init container, a sidecar, env, probes,
# resources, volumes and the usual managed metadata (about 4 KB).
cat > "$WORK/review.json" <<'JSON'
{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"requestKind":{"group":"","version":"v1","kind":"Pod"},"requestResource":{"group":"","version":"v1","resource":"pods"},"namespace":"bench","operation":"CREATE","userInfo":{"username":"system:serviceaccount:kube-system:replicaset-controller","uid":"3f2a1c9e-0000-4000-8000-000000000001","groups":["system:serviceaccounts","system:serviceaccounts:kube-system","system:authenticated"]},"object":{"kind":"Pod","apiVersion":"v1","metadata":{"generateName":"api-7d9f8b6c5d-","namespace":"bench","creationTimestamp":null,"labels":{"app.kubernetes.io/name":"api","app.kubernetes.io/part-of":"shop","pod-template-hash":"7d9f8b6c5d"},"annotations":{"kubectl.kubernetes.io/default-container":"api","prometheus.io/scrape":"true","prometheus.io/port":"9102"},"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"api-7d9f8b6c5d","uid":"9b1e2d3c-0000-4000-8000-000000000002","controller":true,"blockOwnerDeletion":true}],"managedFields":[{"manager":"kube-controller-manager","operation":"Update","apiVersion":"v1","time":"2026-11-23T06:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app.kubernetes.io/name":{},"f:pod-template-hash":{}}}}}]},"spec":{"volumes":[{"name":"config","configMap":{"name":"api-config","defaultMode":420}},{"name":"kube-api-access-abcde","projected":{"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}},{"configMap":{"name":"kube-root-ca.crt","items":[{"key":"ca.crt","path":"ca.crt"}]}},{"downwardAPI":{"items":[{"path":"namespace","fieldRef":{"apiVersion":"v1","fieldPath":"metadata.namespace"}}]}}],"defaultMode":420}}],"initContainers":[{"name":"migrate","image":"registry.example.com/shop/api:1.42.0","command":["/app/migrate","--wait"],"env":[{"name":"DATABASE_URL","valueFrom":{"secretKeyRef":{"name":"api-db","key":"url"}}}],"resources":{"limits":{"memory":"128Mi"},"requests":{"cpu":"50m","memory":"64Mi"}},"volumeMounts":[{"name":"kube-api-access-abcde","readOnly":true,"mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"}],"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"containers":[{"name":"api","image":"registry.example.com/shop/api:1.42.0","args":["--listen=:8080","--metrics=:9102"],"ports":[{"name":"http","containerPort":8080,"protocol":"TCP"},{"name":"metrics","containerPort":9102,"protocol":"TCP"}],"env":[{"name":"LOG_LEVEL","value":"info"},{"name":"POD_NAME","valueFrom":{"fieldRef":{"apiVersion":"v1","fieldPath":"metadata.name"}}},{"name":"GOMAXPROCS","valueFrom":{"resourceFieldRef":{"resource":"limits.cpu","divisor":"0"}}}],"resources":{"limits":{"cpu":"2","memory":"512Mi"},"requests":{"cpu":"250m","memory":"256Mi"}},"volumeMounts":[{"name":"config","mountPath":"/etc/api"},{"name":"kube-api-access-abcde","readOnly":true,"mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"}],"livenessProbe":{"httpGet":{"path":"/healthz","port":8080,"scheme":"HTTP"},"initialDelaySeconds":5,"timeoutSeconds":1,"periodSeconds":10,"successThreshold":1,"failureThreshold":3},"readinessProbe":{"httpGet":{"path":"/readyz","port":8080,"scheme":"HTTP"},"timeoutSeconds":1,"periodSeconds":5,"successThreshold":1,"failureThreshold":3},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent","securityContext":{"allowPrivilegeEscalation":false,"readOnlyRootFilesystem":true,"runAsNonRoot":true,"capabilities":{"drop":["ALL"]}}},{"name":"envoy","image":"envoyproxy/envoy:v1.31.0","args":["-c","/etc/envoy/envoy.yaml"],"resources":{"limits":{"memory":"128Mi"},"requests":{"cpu":"50m","memory":"64Mi"}},"volumeMounts":[{"name":"kube-api-access-abcde","readOnly":true,"mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"}],"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","serviceAccountName":"app","serviceAccount":"app","securityContext":{"runAsUser":10001,"fsGroup":10001,"seccompProfile":{"type":"RuntimeDefault"}},"affinity":{"podAntiAffinity":{"preferredDuringSchedulingIgnoredDuringExecution":[{"weight":100,"podAffinityTerm":{"labelSelector":{"matchLabels":{"app.kubernetes.io/name":"api"}},"topologyKey":"kubernetes.io/hostname"}}]}},"schedulerName":"default-scheduler","tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300},{"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}],"priority":0,"enableServiceLinks":true,"preemptionPolicy":"PreemptLowerPriority"},"status":{}},"oldObject":null,"dryRun":false,"options":{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}}}
JSON


bench_start_webhook "$WORK/serviceaccounts.json"

# Sanity: the review is mutated (a patch comes back).
curl -fsS -k --http2 -H 'content-type: application/json' --data-binary "@$WORK/review.json" \
    "https://127.0.0.1:$PORT/mutate" | grep -q '"patchType":"JSONPatch"' \
    || { echo "the benchmark review was not mutated" >&2; exit 1; }

sleep 1
IDLE_RSS_KB=$(proc_kb VmRSS)

H2="h2load -H content-type:application/json -d $WORK/review.json"
URL="https://127.0.0.1:$PORT/mutate"

echo "== warm-up"
$H2 -D 3 -c 4 -m 8 -t 1 "$URL" >/dev/null

echo "== saturation: ${SECONDS_PER_RUN}s, 16 connections x 16 streams, 1 client thread"
$H2 -D "$SECONDS_PER_RUN" -c 16 -m 16 -t 1 "$URL" | tee "$WORK/sat.txt" | grep -E "finished in|requests:|status codes:"
SAT_RPS=$(awk '/finished in/ { for (i = 1; i <= NF; i++) if ($i ~ /req\/s/) { gsub(",", "", $(i-1)); print $(i-1) } }' "$WORK/sat.txt")

# The webhook's own latency histogram: "le count" lines, cumulative.
buckets() { curl -fsS "http://127.0.0.1:$MPORT/metrics" \
    | sed -n 's/^irsa_webhook_request_duration_seconds_bucket{le="\([^"]*\)"} \([0-9.]*\).*/\1 \2/p'; }
buckets > "$WORK/before.txt"

echo "== fixed rate: 1000 req/s for ${SECONDS_PER_RUN}s (10 connections x 100 req/s, kept alive)"
$H2 -D "$SECONDS_PER_RUN" -c 10 -m 1 -t 1 --rps 100 --log-file "$WORK/rps.log" "$URL" \
    | tee "$WORK/rps.txt" | grep -E "finished in|requests:|status codes:"
# h2load's log: start time, status, elapsed microseconds (tab-separated).
read -r P50 P99 N < <(awk -F'\t' '$2 == 200 { print $3 }' "$WORK/rps.log" | sort -n \
    | awk '{ v[NR] = $1 } END { i50 = int(NR * 0.50); if (i50 < 1) i50 = 1; i99 = int(NR * 0.99); if (i99 < 1) i99 = 1; printf "%.3f %.3f %d\n", v[i50] / 1000, v[i99] / 1000, NR }')
buckets > "$WORK/after.txt"
# Server-side: share under 1 ms, and the bucket bounds holding p50/p99 of this run only.
read -r SERVER_UNDER_1MS SERVER_P50 SERVER_P99 < <(awk '
    NR == FNR { before[$1] = $2; next }
    { le[++n] = $1; d[n] = $2 - before[$1] }
    END {
        total = d[n]; p50 = p99 = "n/a"
        for (i = 1; i <= n; i++) {
            if (le[i] == "0.001") under = d[i]
            if (p50 == "n/a" && d[i] >= 0.50 * total) p50 = le[i]
            if (p99 == "n/a" && d[i] >= 0.99 * total) p99 = le[i]
        }
        printf "%.2f %s %s\n", 100 * under / total, p50 * 1000, p99 * 1000
    }' "$WORK/before.txt" "$WORK/after.txt")

PEAK_RSS_KB=$(proc_kb VmHWM)
kill -TERM "$PID"
set +e
wait "$PID"
EXIT=$?
set -e
PID=""

echo
echo "== irsa webhook benchmark ($(nproc) cores, $N_SA ServiceAccounts, $(wc -c < "$WORK/review.json")-byte review)"
printf "throughput at saturation:      %s req/s\n" "$SAT_RPS"
printf "at 1000 req/s (client side):   p50 %s ms, p99 %s ms over %s requests\n" "$P50" "$P99" "$N"
printf "at 1000 req/s (server side):   p50 <= %s ms, p99 <= %s ms (histogram buckets); %s%% under 1 ms\n" "$SERVER_P50" "$SERVER_P99" "$SERVER_UNDER_1MS"
printf "machine load average:          %s\n" "$(cut -d' ' -f1-3 /proc/loadavg)"
awk -v i="$IDLE_RSS_KB" -v p="$PEAK_RSS_KB" 'BEGIN { printf "RSS idle / peak:               %.1f MB / %.1f MB\n", i / 1024, p / 1024 }'
printf "exit status after SIGTERM:     %s\n" "$EXIT"
