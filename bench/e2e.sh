#!/usr/bin/env bash
# End-to-end benchmark: direct vs Trellis vs HAProxy 2.6 vs nginx 1.22, same run, same machine,
# loopback. Each proxy is an equivalent HTTP/1.1 reverse proxy (keep-alive to the upstream, one
# worker/thread, access logs off) pinned to its own core; the neutral upstream is a second nginx
# serving a 1 KiB file. Load: bench/src/bin/loadgen.rs (constant rate, open loop, latency from
# the intended send time) at each RATES x CONNS, then wrk (closed loop) for maximum throughput.
#
# Reported per proxy: added latency over direct (p50/p90/p99/p99.9, same rate and connections),
# CPU seconds per 1,000 requests (utime+stime from /proc/PID/stat over the run), RSS (VmRSS after
# the run), and max rps with the proxy's CPU use, i.e. requests per core-second.
#
# The machine is shared and noisy: every run is short and is repeated REPEAT times, the repeats
# interleaved over time (all targets, then all again), and the table shows each metric's median.
#
# Usage: bash bench/e2e.sh              (writes the table into bench/RESULTS.md)
#   DURATION=5 REPEAT=3 WARMUP=1 RATES="1000 10000" CONNS="16 64" MAX_CONNS=64 BASE_PORT=18080
#   PROXY_CPU=0 UPSTREAM_CPU=1 CLIENT_CPU=1 TRELLIS_ARGS="..." (extra `trellis proxy` flags)
#   RESULTS_MD=bench/RESULTS.md (set to /dev/null to only print)
#   PREBUILT_DIR=DIR (trellis, loadgen, floor_relay already built there: no cargo needed)
# Needs root (or sudo) only to apt-get install haproxy, nginx and wrk when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
REPEAT=${REPEAT:-3}
WARMUP=${WARMUP:-1}
RATES=${RATES:-"1000 10000"}
CONNS=${CONNS:-"16 64"}
MAX_CONNS=${MAX_CONNS:-64}
BASE_PORT=${BASE_PORT:-18080}
CPUS=$(nproc)
PROXY_CPU=${PROXY_CPU:-0}
UPSTREAM_CPU=${UPSTREAM_CPU:-$((CPUS > 1 ? 1 : 0))}
CLIENT_CPU=${CLIENT_CPU:-$((CPUS > 2 ? 2 : UPSTREAM_CPU))}
RESULTS_MD=${RESULTS_MD:-bench/RESULTS.md}
TRELLIS_ARGS=${TRELLIS_ARGS:---cores 1 --health-port 0}

UP_PORT=$BASE_PORT
TRELLIS_PORT=$((BASE_PORT + 1))
HAPROXY_PORT=$((BASE_PORT + 2))
NGINX_PORT=$((BASE_PORT + 3))
FLOOR_PORT=$((BASE_PORT + 4))

log() { echo "== $*" >&2; }

# ---- tools ------------------------------------------------------------------------------------
need=()
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
HAPROXY_VERSION=$(haproxy -v | awk 'NR == 1 {print $3}')
NGINX_VERSION=$(nginx -v 2>&1 | sed 's|.*nginx/||')

if [ -n "${PREBUILT_DIR:-}" ]; then
  # Binaries built elsewhere (bench/device_e2e.sh: a machine without a Rust toolchain).
  log "using prebuilt trellis, loadgen and floor_relay from $PREBUILT_DIR"
  TRELLIS=$PREBUILT_DIR/trellis
  LOADGEN=$PREBUILT_DIR/loadgen
  FLOOR=$PREBUILT_DIR/floor_relay
else
  log "building trellis and loadgen (release)"
  cargo build --release --quiet --bin trellis -p trellis
  cargo build --release --quiet -p trellis-bench --bin loadgen --bin floor_relay
  TRELLIS=$PWD/target/release/trellis
  LOADGEN=$PWD/target/release/loadgen
  FLOOR=$PWD/target/release/floor_relay
fi

WORK=$(mktemp -d /tmp/trellis-e2e-bench.XXXXXX)
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

# ---- upstream: nginx serving a 1 KiB file -----------------------------------------------------
mkdir -p "$WORK/www" "$WORK/up" "$WORK/ngx"
head -c 1024 /dev/zero | tr '\0' 'x' >"$WORK/www/1k"
chmod -R a+rX "$WORK/www"
nginx_common() { # $1 = prefix dir
  cat <<EOF
worker_processes 1;
daemon off;
error_log $1/error.log warn;
pid $1/nginx.pid;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $1/body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
EOF
}
{
  nginx_common "$WORK/up"
  cat <<EOF
  server {
    listen 127.0.0.1:$UP_PORT;
    location / { root $WORK/www; }
  }
}
EOF
} >"$WORK/up/nginx.conf"
taskset -c "$UPSTREAM_CPU" nginx -p "$WORK/up" -c "$WORK/up/nginx.conf" &
PIDS+=($!)
wait_port "$UP_PORT"

# ---- the three proxies ------------------------------------------------------------------------
cat >"$WORK/trellis.yaml" <<EOF
listeners:
  - {name: bench, address: "127.0.0.1:$TRELLIS_PORT", direction: outbound}
services:
  - host: up
    ports: [80]
    endpoints:
      - {address: "127.0.0.1:$UP_PORT"}
EOF
# Access logging off, as for the other two.
RUST_LOG=warn taskset -c "$PROXY_CPU" "$TRELLIS" proxy --config "$WORK/trellis.yaml" --seed 1 $TRELLIS_ARGS &
TRELLIS_PID=$!
PIDS+=($TRELLIS_PID)

cat >"$WORK/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT
  default_backend be
backend be
  server up 127.0.0.1:$UP_PORT
EOF
# The floor: Trellis's runtime relaying bytes, one upstream connection per downstream one, no
# parsing (bench/src/bin/floor_relay.rs), on the backend Trellis picks by default.
FLOOR_ARGS=""
if [ "${FLOOR_BACKEND:-io-uring}" = io-uring ]; then FLOOR_ARGS="--io-uring"; fi
taskset -c "$PROXY_CPU" "$FLOOR" --listen "127.0.0.1:$FLOOR_PORT" --upstream "127.0.0.1:$UP_PORT" $FLOOR_ARGS &
FLOOR_PID=$!
PIDS+=($FLOOR_PID)

taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/haproxy.cfg" &
HAPROXY_PID=$!
PIDS+=($HAPROXY_PID)

{
  nginx_common "$WORK/ngx"
  cat <<EOF
  upstream up { server 127.0.0.1:$UP_PORT; keepalive 256; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
} >"$WORK/ngx/nginx.conf"
taskset -c "$PROXY_CPU" nginx -p "$WORK/ngx" -c "$WORK/ngx/nginx.conf" &
NGINX_MASTER=$!
PIDS+=($NGINX_MASTER)

for p in "$TRELLIS_PORT" "$HAPROXY_PORT" "$NGINX_PORT" "$FLOOR_PORT"; do wait_port "$p"; done
sleep 0.3
# nginx serves from its (single) worker process; that is the one to measure.
NGINX_PID=$(pgrep -o -P "$NGINX_MASTER")
UP_PID=$(pgrep -o -P "${PIDS[0]}")

for port in "$UP_PORT" "$TRELLIS_PORT" "$HAPROXY_PORT" "$NGINX_PORT" "$FLOOR_PORT"; do
  body=$(curl -sS --fail -H 'host: up' "http://127.0.0.1:$port/1k")
  [ "${#body}" = 1024 ] || { echo "port $port did not serve the 1 KiB file" >&2; exit 1; }
done

cpu_ticks() { # utime+stime of a pid, in clock ticks
  sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
TICKS=$(getconf CLK_TCK)

target_port() {
  case $1 in direct) echo "$UP_PORT" ;; trellis) echo "$TRELLIS_PORT" ;;
    haproxy) echo "$HAPROXY_PORT" ;; nginx) echo "$NGINX_PORT" ;; floor) echo "$FLOOR_PORT" ;; esac
}
target_pid() {
  case $1 in direct) echo "$UP_PID" ;; trellis) echo "$TRELLIS_PID" ;;
    haproxy) echo "$HAPROXY_PID" ;; nginx) echo "$NGINX_PID" ;; floor) echo "$FLOOR_PID" ;; esac
}

RUNS=$WORK/runs.jsonl
: >"$RUNS"
TARGETS="direct trellis haproxy nginx floor"

for rep in $(seq "$REPEAT"); do
for rate in $RATES; do
  for conns in $CONNS; do
    for t in $TARGETS; do
      pid=$(target_pid "$t")
      before=$(cpu_ticks "$pid")
      line=$(taskset -c "$CLIENT_CPU" "$LOADGEN" --addr "127.0.0.1:$(target_port "$t")" \
        --path /1k --host up --rate "$rate" --connections "$conns" \
        --duration "$DURATION" --warmup "$WARMUP" --label "$t")
      after=$(cpu_ticks "$pid")
      echo "$line" | python3 -c "
import json, sys
r = json.loads(sys.stdin.read())
r.update(kind='rate', rep=$rep, target='$t', cpu_s=($after - $before) / $TICKS, rss_kb=$(rss_kb "$pid"))
print(json.dumps(r))" >>"$RUNS"
    done
  done
done
done

log "max throughput: wrk -t1 -c$MAX_CONNS -d${DURATION}s"
for rep in $(seq "$REPEAT"); do
for t in $TARGETS; do
  pid=$(target_pid "$t")
  before=$(cpu_ticks "$pid")
  out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$MAX_CONNS" -d"${DURATION}s" -H 'Host: up' \
    "http://127.0.0.1:$(target_port "$t")/1k")
  after=$(cpu_ticks "$pid")
  echo "$out" >&2
  rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
  total=$(echo "$out" | awk '/requests in/ {print $1}')
  errors=$(echo "$out" | awk '/Non-2xx|Socket errors/ {n++} END {print n+0}')
  python3 -c "
import json
print(json.dumps(dict(kind='max', rep=$rep, target='$t', rps=float('$rps'), total=int('$total'),
  errors=int('$errors'), cpu_s=($after - $before) / $TICKS, rss_kb=$(rss_kb "$pid"),
  duration_s=float('$DURATION'))))" >>"$RUNS"
done
done

# ---- report -------------------------------------------------------------------------------------
REPORT=$WORK/report.md
python3 - "$RUNS" "$REPORT" <<EOF
import json, statistics, sys
raw = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
# One row per (kind, rate, connections, target): the median of each number over the repeats.
groups = {}
for r in raw:
    groups.setdefault((r['kind'], r.get('rate'), r.get('connections'), r['target']), []).append(r)
runs = []
for rs in groups.values():
    m = dict(rs[0])
    for k, v in rs[0].items():
        if isinstance(v, (int, float)) and k not in ('rate', 'connections', 'rep'):
            m[k] = statistics.median(x[k] for x in rs)
    m['repeats'] = len(rs)
    runs.append(m)
out = []
w = out.append
w("Command: \`bash bench/e2e.sh\` (DURATION=$DURATION s measured after ${WARMUP} s warm-up per run, "
  "each run repeated REPEAT=$REPEAT times interleaved, medians shown; "
  "RATES=\"$RATES\", CONNS=\"$CONNS\", wrk -c$MAX_CONNS)  ")
w("Date: $(date -u +%Y-%m-%d), machine: $CPUS CPU(s) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), "
  "Linux $(uname -r); HAProxy $HAPROXY_VERSION, nginx $NGINX_VERSION (Debian); proxy on CPU $PROXY_CPU, "
  "upstream nginx on CPU $UPSTREAM_CPU, load generator on CPU $CLIENT_CPU.  ")
w("Trellis: \`trellis proxy $TRELLIS_ARGS\` (thread-per-core runtime on one core; backend auto = io_uring here, epoll fallback), access log off (RUST_LOG=warn).  ")
w("floor: \`floor_relay\` (bench/src/bin/floor_relay.rs), Trellis's runtime relaying bytes without parsing, one upstream connection per downstream one (${FLOOR_BACKEND:-io-uring}): the limit of the runtime itself.")
w("")
w("### Added latency over direct (µs; loadgen, constant rate, open loop, from the intended send time)")
w("")
w("| rate | conns | target | p50 | p90 | p99 | p99.9 | max | added p50 | added p90 | added p99 | added p99.9 | ok | errors | CPU s / 1k req | RSS MiB |")
w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
rate_runs = [r for r in runs if r['kind'] == 'rate']
for r in rate_runs:
    d = next(x for x in rate_runs if x['target'] == 'direct' and x['rate'] == r['rate'] and x['connections'] == r['connections'])
    add = lambda k: '—' if r['target'] == 'direct' else f"{r[k] - d[k]:+.0f}"
    cpu = '—' if r['target'] == 'direct' else f"{r['cpu_s'] / max(r['total'], 1) * 1000:.4f}"
    rss = '—' if r['target'] == 'direct' else f"{r['rss_kb'] / 1024:.1f}"
    w(f"| {r['rate']} | {r['connections']} | {r['target']} | {r['p50_us']:.0f} | {r['p90_us']:.0f} | {r['p99_us']:.0f} | {r['p999_us']:.0f} | {r['max_us']:.0f} | "
      f"{add('p50_us')} | {add('p90_us')} | {add('p99_us')} | {add('p999_us')} | {r['ok']:.0f} | {r['errors'] + r['non2xx']:.0f} | {cpu} | {rss} |")
w("")
w("### Maximum throughput (wrk, closed loop, $MAX_CONNS connections)")
w("")
w("| target | rps | proxy CPU use | requests per proxy core-second | CPU s / 1k req | RSS MiB |")
w("|---|---|---|---|---|---|")
for r in runs:
    if r['kind'] != 'max':
        continue
    if r['target'] == 'direct':
        w(f"| direct | {r['rps']:.0f} | — | — | — | — |")
        continue
    busy = r['cpu_s'] / r['duration_s']
    per_core = r['total'] / r['cpu_s'] if r['cpu_s'] > 0 else float('nan')
    w(f"| {r['target']} | {r['rps']:.0f} | {busy * 100:.0f} % | {per_core:.0f} | {r['cpu_s'] / max(r['total'], 1) * 1000:.4f} | {r['rss_kb'] / 1024:.1f} |")
open(sys.argv[2], 'w').write('\n'.join(out) + '\n')
EOF
cat "$REPORT"
LAST=${TMPDIR:-/tmp}/trellis-e2e-bench-last.jsonl
cp "$RUNS" "$LAST"
log "raw runs (JSON lines): $LAST"

# Replace the generated section of RESULTS.md (between the markers), keeping the rest.
if [ "$RESULTS_MD" != /dev/null ] && [ -f "$RESULTS_MD" ]; then
  python3 - "$RESULTS_MD" "$REPORT" <<'EOF'
import sys
path, report = sys.argv[1], open(sys.argv[2]).read()
text = open(path).read()
begin, end = "<!-- e2e.sh:begin -->", "<!-- e2e.sh:end -->"
block = f"{begin}\n{report}{end}"
if begin in text and end in text:
    text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
else:
    text = text.rstrip() + "\n\n" + block + "\n"
open(path, "w").write(text)
EOF
  log "table written to $RESULTS_MD"
fi
