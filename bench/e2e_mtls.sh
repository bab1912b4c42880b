#!/usr/bin/env bash
# The mTLS hop benchmark (issue 11): a whole sidecar-to-sidecar hop, client sidecar → server
# sidecar → workload, in plaintext and with mutual TLS, side by side with HAProxy doing the same
# hop (a plaintext frontend whose backend speaks TLS with a client certificate to a second
# HAProxy that requires one), against direct, in one run on one machine.
#
#   direct        loadgen → nginx
#   trellis-plain loadgen → trellis (outbound) → trellis (inbound, DISABLE) → nginx
#   trellis-mtls  loadgen → trellis (outbound, auto mTLS) → trellis (inbound, STRICT) → nginx
#   haproxy-tls   loadgen → haproxy (backend ssl, client cert) → haproxy (ssl, verify required) → nginx
#
# Certificates come from `trellis ca` (ECDSA P-256, as istiod's), the same files for both.
# Both proxies of a hop share one pinned core, so "CPU s / 1k req" is the whole hop's.
# Reported: added latency over direct (p50/p99, loadgen open loop at each rate), CPU per request,
# RSS of the two proxies together. Long-lived connections: this measures the steady state
# (records), not handshakes; `cargo run --release -p trellis-bench --example tls_handshakes`
# measures handshakes.
#
# Usage: bash bench/e2e_mtls.sh   DURATION=5 REPEAT=3 RATES="1000 5000" CONNS=16 BASE_PORT=19080
#   RESULTS_MD=bench/RESULTS.md (set to /dev/null to only print)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
REPEAT=${REPEAT:-3}
WARMUP=${WARMUP:-1}
RATES=${RATES:-"1000 5000"}
CONNS=${CONNS:-16}
BASE_PORT=${BASE_PORT:-19080}
CPUS=$(nproc)
PROXY_CPU=${PROXY_CPU:-0}
UPSTREAM_CPU=${UPSTREAM_CPU:-$((CPUS > 1 ? 1 : 0))}
CLIENT_CPU=${CLIENT_CPU:-$((CPUS > 2 ? 2 : UPSTREAM_CPU))}
RESULTS_MD=${RESULTS_MD:-bench/RESULTS.md}

UP_PORT=$BASE_PORT
PLAIN_OUT=$((BASE_PORT + 1))
PLAIN_IN=$((BASE_PORT + 2))
MTLS_OUT=$((BASE_PORT + 3))
MTLS_IN=$((BASE_PORT + 4))
HA_OUT=$((BASE_PORT + 5))
HA_IN=$((BASE_PORT + 6))

log() { echo "== $*" >&2; }

need=()
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
HAPROXY_VERSION=$(haproxy -v | awk 'NR == 1 {print $3}')

log "building trellis and loadgen (release)"
cargo build --release --quiet --bin trellis -p trellis
cargo build --release --quiet -p trellis-bench --bin loadgen
TRELLIS=$PWD/target/release/trellis
LOADGEN=$PWD/target/release/loadgen

WORK=$(mktemp -d /tmp/trellis-e2e-mtls.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2
  return 1
}

# ---- certificates ----------------------------------------------------------------------------
"$TRELLIS" ca init --dir "$WORK/ca" >/dev/null
"$TRELLIS" ca issue --dir "$WORK/ca" --service-account client --out "$WORK/client" >/dev/null
"$TRELLIS" ca issue --dir "$WORK/ca" --service-account server --out "$WORK/server" >/dev/null
cat "$WORK/client/cert-chain.pem" "$WORK/client/key.pem" >"$WORK/client.pem"
cat "$WORK/server/cert-chain.pem" "$WORK/server/key.pem" >"$WORK/server.pem"

# ---- upstream: nginx serving a 1 KiB file ----------------------------------------------------
mkdir -p "$WORK/www" "$WORK/up"
head -c 1024 /dev/zero | tr '\0' 'x' >"$WORK/www/1k"
chmod -R a+rX "$WORK/www"
cat >"$WORK/up/nginx.conf" <<EOF
worker_processes 1;
daemon off;
error_log $WORK/up/error.log warn;
pid $WORK/up/nginx.pid;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK/up/body;
  proxy_temp_path $WORK/up/proxy;
  fastcgi_temp_path $WORK/up/fastcgi;
  uwsgi_temp_path $WORK/up/uwsgi;
  scgi_temp_path $WORK/up/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server { listen 127.0.0.1:$UP_PORT; location / { root $WORK/www; } }
}
EOF
taskset -c "$UPSTREAM_CPU" nginx -p "$WORK/up" -c "$WORK/up/nginx.conf" &
PIDS+=($!)
wait_port "$UP_PORT"
UP_PID=$(pgrep -o -P "${PIDS[0]}")

# ---- the Trellis hops ------------------------------------------------------------------------
sidecar() { # name config
  echo "$2" >"$WORK/$1.yaml"
  RUST_LOG=warn taskset -c "$PROXY_CPU" "$TRELLIS" proxy --config "$WORK/$1.yaml" --seed 1 \
    --cores 1 --health-port 0 --no-watch &
  PIDS+=($!)
  eval "PID_$1=$!"
}
identity() { # dir
  printf 'identity: {certChain: %s/cert-chain.pem, key: %s/key.pem, rootCert: %s/root-cert.pem}\n' "$1" "$1" "$1"
}
pa() { # mode
  printf 'istio:\n  resources:\n    - {apiVersion: security.istio.io/v1, kind: PeerAuthentication, metadata: {name: default, namespace: default}, spec: {mtls: {mode: %s}}}\n' "$1"
}
client_config() { # port upstream-port tls-label
  printf 'listeners:\n  - {name: out, address: "127.0.0.1:%s", direction: outbound}\nservices:\n  - host: up\n    ports: [80]\n    endpoints:\n      - {address: "127.0.0.1:%s", labels: {%s}}\n' "$1" "$2" "$3"
}
server_config() { # port
  printf 'workload: {serviceAccount: server}\nlisteners:\n  - {name: in, address: "127.0.0.1:%s", direction: inbound, forwardTo: "127.0.0.1:%s"}\n' "$1" "$UP_PORT"
}
sidecar plain_in "$(server_config "$PLAIN_IN")
$(pa DISABLE)"
sidecar plain_out "$(client_config "$PLAIN_OUT" "$PLAIN_IN" "app: up")"
sidecar mtls_in "$(server_config "$MTLS_IN")
$(identity "$WORK/server")
$(pa STRICT)"
sidecar mtls_out "$(client_config "$MTLS_OUT" "$MTLS_IN" "security.istio.io/tlsMode: istio")
$(identity "$WORK/client")"

# ---- the HAProxy hop -------------------------------------------------------------------------
haproxy_cfg() { # name frontend backend
  cat <<EOF
global
  nbthread 1
  maxconn 4096
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  option http-keep-alive
  http-reuse always
frontend fe
  $2
  default_backend be
backend be
  $3
EOF
}
haproxy_cfg in "bind 127.0.0.1:$HA_IN ssl crt $WORK/server.pem ca-file $WORK/server/root-cert.pem verify required" \
  "server up 127.0.0.1:$UP_PORT" >"$WORK/ha_in.cfg"
haproxy_cfg out "bind 127.0.0.1:$HA_OUT" \
  "server s 127.0.0.1:$HA_IN ssl crt $WORK/client.pem ca-file $WORK/client/root-cert.pem verify required" >"$WORK/ha_out.cfg"
taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/ha_in.cfg" &
PIDS+=($!); PID_ha_in=$!
taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/ha_out.cfg" &
PIDS+=($!); PID_ha_out=$!

for p in "$PLAIN_OUT" "$PLAIN_IN" "$MTLS_OUT" "$MTLS_IN" "$HA_OUT" "$HA_IN"; do wait_port "$p"; done
sleep 0.3
for port in "$UP_PORT" "$PLAIN_OUT" "$MTLS_OUT" "$HA_OUT"; do
  body=$(curl -sS --fail -H 'host: up' "http://127.0.0.1:$port/1k")
  [ "${#body}" = 1024 ] || { echo "port $port did not serve the 1 KiB file" >&2; exit 1; }
done

cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
TICKS=$(getconf CLK_TCK)
target_port() { case $1 in direct) echo "$UP_PORT" ;; trellis-plain) echo "$PLAIN_OUT" ;;
  trellis-mtls) echo "$MTLS_OUT" ;; haproxy-tls) echo "$HA_OUT" ;; esac; }
target_pids() { case $1 in direct) echo "$UP_PID" ;; trellis-plain) echo "$PID_plain_out $PID_plain_in" ;;
  trellis-mtls) echo "$PID_mtls_out $PID_mtls_in" ;; haproxy-tls) echo "$PID_ha_out $PID_ha_in" ;; esac; }
sum() { local f=$1 t=0; shift; for p in "$@"; do t=$((t + $($f "$p"))); done; echo "$t"; }

RUNS=$WORK/runs.jsonl
: >"$RUNS"
TARGETS="direct trellis-plain trellis-mtls haproxy-tls"
for rep in $(seq "$REPEAT"); do
  for rate in $RATES; do
    for t in $TARGETS; do
      # shellcheck disable=SC2046
      set -- $(target_pids "$t")
      before=$(sum cpu_ticks "$@")
      line=$(taskset -c "$CLIENT_CPU" "$LOADGEN" --addr "127.0.0.1:$(target_port "$t")" \
        --path /1k --host up --rate "$rate" --connections "$CONNS" \
        --duration "$DURATION" --warmup "$WARMUP" --label "$t")
      after=$(sum cpu_ticks "$@")
      echo "$line" | python3 -c "
import json, sys
r = json.loads(sys.stdin.read())
r.update(rep=$rep, target='$t', cpu_s=($after - $before) / $TICKS, rss_kb=$(sum rss_kb "$@"))
print(json.dumps(r))" >>"$RUNS"
    done
  done
done

REPORT=$WORK/report.md
python3 - "$RUNS" "$REPORT" <<EOF
import json, statistics, sys
raw = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
groups = {}
for r in raw:
    groups.setdefault((r['rate'], r['target']), []).append(r)
runs = []
for rs in groups.values():
    m = dict(rs[0])
    for k, v in rs[0].items():
        if isinstance(v, (int, float)) and k not in ('rate', 'connections', 'rep'):
            m[k] = statistics.median(x[k] for x in rs)
    runs.append(m)
out = []
w = out.append
w("Command: \`bash bench/e2e_mtls.sh\` (DURATION=$DURATION s after ${WARMUP} s warm-up, REPEAT=$REPEAT interleaved, medians; "
  "RATES=\"$RATES\", CONNS=$CONNS)  ")
w("Date: $(date -u +%Y-%m-%d), $CPUS CPU(s), Linux $(uname -r), HAProxy $HAPROXY_VERSION; both proxies of a hop on CPU $PROXY_CPU, "
  "upstream nginx on CPU $UPSTREAM_CPU, loadgen on CPU $CLIENT_CPU. Certificates: \`trellis ca\` (ECDSA P-256), TLS 1.3.")
w("")
w("| rate | hop | p50 µs | p99 µs | added p50 | added p99 | ok | errors | hop CPU s / 1k req | hop RSS MiB |")
w("|---|---|---|---|---|---|---|---|---|---|")
for r in sorted(runs, key=lambda r: (r['rate'], ['direct', 'trellis-plain', 'trellis-mtls', 'haproxy-tls'].index(r['target']))):
    d = next(x for x in runs if x['target'] == 'direct' and x['rate'] == r['rate'])
    add = lambda k: '—' if r['target'] == 'direct' else f"{r[k] - d[k]:+.0f}"
    cpu = '—' if r['target'] == 'direct' else f"{r['cpu_s'] / max(r['total'], 1) * 1000:.4f}"
    rss = '—' if r['target'] == 'direct' else f"{r['rss_kb'] / 1024:.1f}"
    w(f"| {r['rate']} | {r['target']} | {r['p50_us']:.0f} | {r['p99_us']:.0f} | {add('p50_us')} | {add('p99_us')} | {r['ok']:.0f} | {r['errors'] + r['non2xx']:.0f} | {cpu} | {rss} |")
open(sys.argv[2], 'w').write('\n'.join(out) + '\n')
EOF
cat "$REPORT"
if [ "$RESULTS_MD" != /dev/null ] && [ -f "$RESULTS_MD" ]; then
  python3 - "$RESULTS_MD" "$REPORT" <<'EOF'
import sys
path, report = sys.argv[1], open(sys.argv[2]).read()
text = open(path).read()
begin, end = "<!-- e2e_mtls.sh:begin -->", "<!-- e2e_mtls.sh:end -->"
block = f"{begin}\n{report}{end}"
if begin in text and end in text:
    text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
else:
    text = text.rstrip() + "\n\n## mTLS hop: Trellis sidecar pair vs HAProxy pair (issue 11)\n\n" + block + "\n"
open(path, "w").write(text)
EOF
  log "table written to $RESULTS_MD"
fi
