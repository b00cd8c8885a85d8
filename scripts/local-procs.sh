# shellcheck shell=bash
# Sourced by the scripts that run local test services (control-plane.sh, verifying-sts.sh):
# free ports, a throwaway PKI, bounded waits that fail with the logs, and stopping exactly the
# processes they started. The sourcing script defines `die` and `DIR` (its state directory: logs/*.log,
# pids/<name>).

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# new_ca CN: ca.key and ca.crt in the current directory, valid for a week.
new_ca() {
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 7 \
    -subj "/CN=$1" 2>/dev/null
}

# cert NAME SUBJECT [SAN]: NAME.key and NAME.crt signed by the current directory's CA: a
# serving certificate for SAN, or without SAN a client certificate.
cert() {
  openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
  local ext="$1.ext"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=digitalSignature,keyEncipherment"
    if [[ -n "${3:-}" ]]; then
      echo "extendedKeyUsage=serverAuth"
      echo "subjectAltName=$3"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" \
    -days 7 -extfile "$ext" 2>/dev/null
  rm -f "$1.csr" "$ext"
}

# Prints the last lines of every log: what a failed wait shows.
show_logs() {
  local f
  for f in "$DIR"/logs/*.log; do
    [[ -f "$f" ]] || continue
    echo "----- last lines of $f -----" >&2
    tail -n 40 "$f" >&2
  done
}

# wait_until SECONDS WHAT COMMAND...: polls COMMAND every second; fails with the logs when the
# time is up or a recorded process exited.
wait_until() {
  local limit=$1 what=$2
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      show_logs
      die "timed out after ${limit}s waiting for $what"
    fi
    local pidfile
    for pidfile in "$DIR"/pids/*; do
      if [[ -f "$pidfile" ]] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        show_logs
        die "$(basename "$pidfile") exited while waiting for $what"
      fi
    done
    sleep 1
  done
}

# stop_one NAME [COMM]: stops the process recorded as NAME if it still runs as COMM (a prefix
# of /proc/PID/comm, default NAME's first 15 characters, what the kernel keeps: the pid may
# have been reused), waiting (bounded) for it to go.
stop_one() {
  local pid comm="${2:-${1:0:15}}"
  [[ -f "$DIR/pids/$1" ]] || return 0
  pid=$(cat "$DIR/pids/$1")
  if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm"* ]]; then
    kill "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/pids/$1"
}
