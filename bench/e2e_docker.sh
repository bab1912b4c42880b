#!/usr/bin/env bash
# The sidecar in real containers, measured (issue 14's benchmark), in one run:
#   - the image's size (deploy/docker/Dockerfile, built here unless IMAGE names one);
#   - sidecar start-to-ready: `docker run` of the sidecar container until its
#     /healthz/ready answers 200 from inside the pod, and the process's own share (its first
#     log line to "config from the control plane applied", and to its workload certificate
#     from the control plane installed, the log's timestamps);
#   - the pod-to-pod path: a client pod (curl) calling a server pod (Python's http.server, a
#     small file) by a plain http://web:8000 URL, first with no mesh, then the SAME two
#     application containers after `trellis init` and a sidecar in each (interception on both
#     sides, routes and certificates from a control-plane container with the mesh CA, mTLS
#     between the sidecars, PeerAuthentication STRICT so that a plaintext hop would fail every
#     request): latency percentiles of each request
#     (curl's own time_total, one request at a time, N requests) and CPU per request of the
#     sidecars and of the whole pods (cgroup v1 cpuacct.usage of each container, before and
#     after).
# Python's http.server answers HTTP/1.0 and closes each connection, so every request is a new
# connection on both sides: the figure includes connection set-up through both sidecars, and
# so a TLS handshake between them per request.
# The control plane signs the identity each sidecar claims (--trust-node-claims): no API
# server here to review a token, as in tests/e2e_docker.rs.
#
# Usage: bash bench/e2e_docker.sh           (root; writes its section into bench/RESULTS.md)
#   N=2000 IMAGE=trellis:dev RESULTS_MD=/dev/null (only print)
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-2000}
RESULTS_MD=${RESULTS_MD:-bench/RESULTS.md}
PREFIX=trellis-bench-$$
NET=$PREFIX-net
SUBNET_PREFIX=${SUBNET_PREFIX:-10.251.$(($$ % 250))}
APP_IMAGE=trellis-base:bookworm
work=$(mktemp -d /tmp/$PREFIX.XXXXXX)
built_image=
stage_image=

cleanup() {
  docker rm -f -v "$PREFIX-ca" "$PREFIX-control" "$PREFIX-web" "$PREFIX-sleep" "$PREFIX-web-sidecar" \
    "$PREFIX-sleep-sidecar" >/dev/null 2>&1 || true
  docker network rm "$NET" >/dev/null 2>&1 || true
  [ -n "$built_image" ] && docker image rm "$built_image" >/dev/null 2>&1 || true
  [ -n "$stage_image" ] && docker image rm "$stage_image" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

docker info >/dev/null 2>&1 || { echo "the Docker engine is not reachable (docker info failed)" >&2; exit 1; }

if [ -z "${IMAGE:-}" ]; then
  bash deploy/docker/base.sh
  IMAGE=$PREFIX:image
  built_image=$IMAGE
  echo "== docker build $IMAGE"
  docker build --force-rm -f deploy/docker/Dockerfile -t "$IMAGE" . >"$work/build.log" 2>&1 ||
    { tail -30 "$work/build.log" >&2; exit 1; }
  # The legacy builder keeps the build stage's image (1.4 GB): its ID is the last ` ---> ID`
  # before the runtime stage's `FROM scratch`.
  stage_image=$(awk '/^ ---> [0-9a-f]+$/ { id = $2 } /^Step .*: FROM scratch/ { print id; exit }' "$work/build.log")
fi
image_bytes=$(docker image inspect -f '{{.Size}}' "$IMAGE")

# --- the files: the control plane's directory, each sidecar's config, the web root -------
mkdir -p "$work/mesh" "$work/sidecar-web" "$work/sidecar-sleep" "$work/www" "$work/ca"
head -c 1024 /dev/zero | tr '\0' x >"$work/www/1k.txt"
cat >"$work/mesh/kube.yaml" <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8000}]
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web, security.istio.io/tlsMode: istio}}
spec: {serviceAccountName: web, containers: [{name: web, image: $APP_IMAGE, ports: [{containerPort: 8000}]}]}
status: {podIP: $SUBNET_PREFIX.20}
---
apiVersion: v1
kind: Pod
metadata: {name: sleep, labels: {app: sleep, security.istio.io/tlsMode: istio}}
spec: {serviceAccountName: sleep, containers: [{name: sleep, image: $APP_IMAGE}]}
status: {podIP: $SUBNET_PREFIX.10}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
EOF
for app in web sleep; do
  cat >"$work/sidecar-$app/sidecar.yaml" <<EOF
listeners:
  - {name: virtualOutbound, address: "0.0.0.0:15001", direction: outbound, passthrough: true}
  - {name: virtualInbound, address: "0.0.0.0:15006", direction: inbound, forwardTo: "127.0.0.1"}
workload: {namespace: default, serviceAccount: $app, labels: {app: $app}}
EOF
done
chmod -R a+rX "$work"
# The mesh CA (root + intermediate), written by the image's user, who runs the control plane.
chmod 777 "$work/ca"
docker run --rm --name "$PREFIX-ca" -v "$work/ca:/ca" "$IMAGE" ca init --dir /ca >/dev/null

# curl's config: N transfers of the same URL, one after the other, bodies discarded.
for _ in $(seq "$N"); do printf 'url = "http://web:8000/1k.txt"\noutput = "/dev/null"\n'; done >"$work/curl.cfg"

docker network create --subnet "$SUBNET_PREFIX.0/24" "$NET" >/dev/null
PLANE=trellis-control.trellis-system.svc
ROOT=/var/run/secrets/istio/root-cert.pem
docker run -d --name "$PREFIX-control" --network "$NET" --ip "$SUBNET_PREFIX.2" --network-alias "$PLANE" \
  -v "$work/mesh:/mesh:ro" -v "$work/ca:/etc/cacerts:ro" "$IMAGE" control --dir /mesh \
  --listen 0.0.0.0:15012 --ca-dir /etc/cacerts --trust-node-claims >/dev/null
docker run -d --name "$PREFIX-web" --network "$NET" --ip "$SUBNET_PREFIX.20" --network-alias web \
  -v "$work/www:/srv:ro" -w /srv "$APP_IMAGE" python3 -m http.server 8000 >/dev/null
docker run -d --name "$PREFIX-sleep" --network "$NET" --ip "$SUBNET_PREFIX.10" --network-alias sleep \
  -v "$work/curl.cfg:/curl.cfg:ro" "$APP_IMAGE" sleep infinity >/dev/null
until docker exec "$PREFIX-sleep" curl -sf -o /dev/null http://web:8000/1k.txt; do sleep 0.1; done

cpu_ns() { # cgroup v1 CPU time of a container, nanoseconds
  local id
  id=$(docker inspect -f '{{.Id}}' "$1")
  cat "/sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage"
}

# Run N requests from the sleep app; print "p50 p90 p99 mean" in microseconds, and the CPU
# nanoseconds each named container used meanwhile.
measure() {
  local label=$1
  shift
  local before=() after=() c
  for c in "$@"; do before+=("$(cpu_ns "$c")"); done
  docker exec "$PREFIX-sleep" curl -sS --config /curl.cfg -w '%{http_code} %{time_total}\n' \
    >"$work/$label.answers" || true
  for c in "$@"; do after+=("$(cpu_ns "$c")"); done
  # Only 200s count: a refused (e.g. plaintext under STRICT) or failed transfer fails the run.
  awk '$1 == 200 { print $2 }' "$work/$label.answers" >"$work/$label.times"
  local ok
  ok=$(wc -l <"$work/$label.times")
  [ "$ok" = "$N" ] || { echo "$label: $ok of $N requests answered 200" >&2; exit 1; }
  sort -g "$work/$label.times" | awk -v n="$N" '
    { t[NR] = $1 * 1e6; sum += $1 * 1e6 }
    END { printf "%d %d %d %d\n", t[int(n*0.50)], t[int(n*0.90)], t[int(n*0.99)], sum / n }' \
    >"$work/$label.lat"
  local i=0
  : >"$work/$label.cpu"
  for c in "$@"; do
    echo "$c $(( ${after[$i]} - ${before[$i]} ))" >>"$work/$label.cpu"
    i=$((i + 1))
  done
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== no mesh: $N requests sleep → web"
docker exec "$PREFIX-sleep" curl -sS --config /curl.cfg >/dev/null # warm-up
measure plain "$PREFIX-sleep" "$PREFIX-web"

# --- the mesh: init and a sidecar in each of the same two pods ---------------------------
start_sidecar() { # pod → prints "container_ms process_ms certificate_ms"
  local pod=$1 app=$PREFIX-$1 side=$PREFIX-$1-sidecar t0 t1
  docker run --rm --network "container:$app" --user 0 --cap-add NET_ADMIN --cap-add NET_RAW \
    "$IMAGE" init >/dev/null 2>&1
  t0=$(date +%s%N)
  docker run -d --name "$side" --network "container:$app" --user 1337 -e RUST_LOG=info -e NO_COLOR=1 \
    -v "$work/sidecar-$pod:/etc/trellis:ro" -v "$work/ca/root-cert.pem:$ROOT:ro" \
    "$IMAGE" proxy --config /etc/trellis/sidecar.yaml \
    --control-plane "$PLANE:15012" --control-plane-ca "$ROOT" --node "$pod" --cores 1 >/dev/null
  docker exec "$app" sh -c 'until curl -sf -o /dev/null http://127.0.0.1:15021/healthz/ready; do sleep 0.005; done'
  t1=$(date +%s%N)
  local installed="workload certificate from the control plane installed"
  until docker logs "$side" 2>&1 | grep -q "config from the control plane applied" &&
    docker logs "$side" 2>&1 | grep -q "$installed"; do sleep 0.05; done
  since_first() { # the log's first line to the first line matching $1, ms
    docker logs "$side" 2>&1 | awk -v want="$1" '
      function secs(ts) { split(substr(ts, 12, 15), p, ":"); return p[1] * 3600 + p[2] * 60 + p[3] }
      NR == 1 { first = secs($1) }
      index($0, want) { printf "%d", (secs($1) - first) * 1000; exit }'
  }
  echo "$(( (t1 - t0) / 1000000 )) $(since_first "config from the control plane applied") $(since_first "$installed")"
}
echo "== trellis init and sidecars"
read -r web_ready_ms web_process_ms web_cert_ms < <(start_sidecar web)
read -r sleep_ready_ms sleep_process_ms sleep_cert_ms < <(start_sidecar sleep)
backend=$(docker logs "$PREFIX-web-sidecar" 2>&1 | grep -o 'backend=[a-z_-]*' | head -1)
until docker exec "$PREFIX-sleep" curl -sf -o /dev/null http://web:8000/1k.txt; do sleep 0.1; done

echo "== mesh: $N requests sleep → sidecar → (mTLS) → sidecar → web"
docker exec "$PREFIX-sleep" curl -sS --config /curl.cfg >/dev/null # warm-up
measure mesh "$PREFIX-sleep" "$PREFIX-web" "$PREFIX-sleep-sidecar" "$PREFIX-web-sidecar"
hits=$(docker logs "$PREFIX-web-sidecar" 2>&1 | grep -c 'trellis::access.*1k.txt' || true)
[ "$hits" -ge "$N" ] || { echo "the web sidecar logged $hits requests, expected at least $N: not captured?" >&2; exit 1; }

load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report -------------------------------------------------------------------------------
read -r p50 p90 p99 mean <"$work/plain.lat"
read -r m50 m90 m99 mmean <"$work/mesh.lat"
cpu_of() { awk -v c="$2" '$1 == c { print $2 }' "$work/$1.cpu"; }
per_req() { echo $(( $1 / N / 1000 )); } # ns total → µs per request
plain_pods=$(( $(cpu_of plain "$PREFIX-sleep") + $(cpu_of plain "$PREFIX-web") ))
mesh_sidecars=$(( $(cpu_of mesh "$PREFIX-sleep-sidecar") + $(cpu_of mesh "$PREFIX-web-sidecar") ))
mesh_pods=$(( $(cpu_of mesh "$PREFIX-sleep") + $(cpu_of mesh "$PREFIX-web") + mesh_sidecars ))
date=$(date -u +%Y-%m-%d)
table=$(cat <<EOF
<!-- e2e_docker:start -->
## The sidecar in containers: image, start-up, pod-to-pod cost with mTLS (issue 14, \`bench/e2e_docker.sh\`, $date)

Docker $(docker version -f '{{.Server.Version}}'), $(nproc) cores shared with the rest of the machine (load average
1/5/15 min: $load_before before, $load_after after the measurements: the tails are the neighbours' too); sidecars
\`--cores 1\`, $backend (default seccomp of this engine). $N sequential requests of a 1 KiB file,
curl → Python \`http.server\` (HTTP/1.0: a new connection per request, through both sidecars, so
one mTLS handshake between them per request; PeerAuthentication STRICT, so no request went plaintext).

| what | value |
|---|---|
| image size (\`deploy/docker/Dockerfile\`, FROM scratch) | $(awk -v b="$image_bytes" 'BEGIN { printf "%.1f MB", b / 1e6 }') |
| sidecar start-to-ready, \`docker run\` to /healthz/ready 200 (web, sleep) | $web_ready_ms ms, $sleep_ready_ms ms |
| ... of which the process: first log line to first config applied (web, sleep) | $web_process_ms ms, $sleep_process_ms ms |
| ... first log line to workload certificate from the control plane installed (web, sleep) | $web_cert_ms ms, $sleep_cert_ms ms |

| path | p50 µs | p90 µs | p99 µs | mean µs | sidecars' CPU µs/req | pods' CPU µs/req |
|---|---|---|---|---|---|---|
| no mesh (same containers) | $p50 | $p90 | $p99 | $mean | – | $(per_req "$plain_pods") |
| two sidecars, captured both sides, mTLS | $m50 | $m90 | $m99 | $mmean | $(per_req "$mesh_sidecars") | $(per_req "$mesh_pods") |
| added by the mesh | $((m50 - p50)) | $((m90 - p90)) | $((m99 - p99)) | $((mmean - mean)) | $(per_req "$mesh_sidecars") | $(per_req $((mesh_pods - plain_pods))) |
<!-- e2e_docker:end -->
EOF
)
echo "$table"
if [ "$RESULTS_MD" != /dev/null ]; then
  if grep -q '<!-- e2e_docker:start -->' "$RESULTS_MD"; then
    awk -v table="$table" '
      /<!-- e2e_docker:start -->/ { print table; skip = 1; next }
      /<!-- e2e_docker:end -->/ { skip = 0; next }
      !skip { print }' "$RESULTS_MD" >"$work/results.md"
    cp "$work/results.md" "$RESULTS_MD"
  else
    printf '\n%s\n' "$table" >>"$RESULTS_MD"
  fi
  echo "== written to $RESULTS_MD"
fi
