#!/usr/bin/env bash
# Measures the same tiny HTTP/1.1 keep-alive responder (1 KiB body) on each runtime:
#   uring        raw io-uring crate completion loop, SINGLE_ISSUER|DEFER_TASKRUN (the project's setup)
#   uring-plain  the same loop on a plain ring (what monoio and tokio-uring build)
#   monoio       monoio 0.2, io_uring driver (its default plain ring), task per connection
#   monoio-tuned the same with the raw loop's ring flags
#   tokio_uring  tokio-uring 0.5 (plain ring, waits in epoll on the ring fd), task per connection
#   tokio_uring-tuned  SINGLE_ISSUER|COOP_TASKRUN (it waits in epoll, so DEFER_TASKRUN starves it)
#   epoll        mio 1 (epoll, edge-triggered), the project's fallback model
#   tokio        tokio current-thread (epoll), for reference
# The server is one thread pinned to CPU 0; wrk (one thread) is pinned to CPU 1. Rounds are
# interleaved (every runtime once per round) and each figure is the median over rounds.
# CPU per request is the server's utime+stime delta over the measured run (/proc/PID/stat)
# divided by wrk's completed requests; RSS is the server's peak (VmHWM).
#
# Environment: ROUNDS (3), DURATION (5s), CONNS ("16 64"), RUNTIMES (all above),
# OUT (a fresh temporary directory; raw wrk output and the per-run TSV are kept there),
# SUMMARY_ONLY=1 (print the table again from an earlier OUT without measuring).
set -euo pipefail
cd "$(dirname "$0")"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-"16 64"}
RUNTIMES=${RUNTIMES:-"uring uring-plain monoio monoio-tuned tokio_uring tokio_uring-tuned epoll tokio"}
OUT=${OUT:-$(mktemp -d /tmp/runtimes-bench.XXXXXX)}
SUMMARY_ONLY=${SUMMARY_ONLY:-0}
mkdir -p "$OUT"

if ! command -v wrk >/dev/null; then
    echo "wrk missing: installing the Debian package" >&2
    apt-get install -y wrk >/dev/null || { echo "error: cannot install wrk" >&2; exit 1; }
fi
if [ "$(nproc)" -lt 2 ]; then
    echo "error: needs 2 CPUs (server on CPU 0, wrk on CPU 1)" >&2
    exit 1
fi

cargo build --release --quiet
TICK=$(getconf CLK_TCK)
PAGE_PORT=$((20000 + RANDOM % 20000))

# utime+stime of a process, in clock ticks, as "user sys".
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12, $13}'; }

# Waits until something accepts on the port (io_uring listeners close asynchronously after
# their process exits, so every run gets a fresh port instead of reusing one).
wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "error: nothing listening on port $1" >&2
    return 1
}

# wrk latency ("123.45us", "1.20ms", "2.00s") in microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
        else if (v ~ /s$/) print n * 1000000; else print n }'
}

TSV="$OUT/runs.tsv"

summarize() {
    # One markdown row per (runtime, conns): medians over rounds, and the rps range to show noise.
    # On a shared machine another process often takes CPU 0 mid-run; the server then gets ~40% of
    # its core and rps/latency say more about the neighbour than the runtime. Runs where the server
    # had at least 75% of its core are "uncontended"; their median rps is shown with their count.
    # CPU per request is the most robust figure either way.
    echo
    echo "| runtime | conns | CPU µs/req (user + sys) | rps (median) | rps range | rps, uncontended runs (n) | p50 µs | p99 µs | server CPU % | peak RSS KiB | errors |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    for conns in $CONNS; do
        for rt in $RUNTIMES; do
            awk -F'\t' -v rt="$rt" -v c="$conns" '
                function median(a, n,    i, j, t) {
                    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
                        t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
                    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
                }
                NR > 1 && $2 == rt && $3 == c {
                    n++; rps[n] = $4; p50[n] = $5; p99[n] = $6; u[n] = $7; s[n] = $8
                    cpu[n] = $7 + $8; pct[n] = $9; hwm[n] = $10
                    if (n == 1 || $4 < lo) lo = $4; if (n == 1 || $4 > hi) hi = $4
                    if ($11 != "none") err = err $11
                    if ($9 >= 75) { m++; clean[m] = $4 }
                }
                END {
                    if (n == 0) exit
                    printf "| %s | %s | %.2f (%.2f + %.2f) | %.0f | %.0f–%.0f | %s (%d) | %.0f | %.0f | %.0f | %.0f | %s |\n",
                        rt, c, median(cpu, n), median(u, n), median(s, n), median(rps, n), lo, hi,
                        (m ? sprintf("%.0f", median(clean, m)) : "–"), m, median(p50, n), median(p99, n),
                        median(pct, n), median(hwm, n), (err == "" ? "none" : err)
                }' "$TSV"
        done
    done
    echo
    echo "rounds: $ROUNDS x $DURATION per run; $(cat "$OUT/load.txt" | tr '\n' ' ')"
    echo "raw output: $OUT"
}

if [ "$SUMMARY_ONLY" = 1 ]; then
    summarize
    exit 0
fi
printf 'round\truntime\tconns\trps\tp50_us\tp99_us\tuser_us_req\tsys_us_req\tcpu_pct\thwm_kib\terrors\n' >"$TSV"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/load.txt"
port=$PAGE_PORT
for round in $(seq "$ROUNDS"); do
    for conns in $CONNS; do
        for rt in $RUNTIMES; do
            port=$((port + 1))
            case $rt in
                uring-plain) cmd=(target/release/uring "127.0.0.1:$port" plain) ;;
                *-tuned) cmd=("target/release/${rt%-tuned}" "127.0.0.1:$port" tuned) ;;
                *) cmd=("target/release/$rt" "127.0.0.1:$port") ;;
            esac
            taskset -c 0 "${cmd[@]}" &
            pid=$!
            wait_port "$port"
            url="http://127.0.0.1:$port/"
            taskset -c 1 wrk -t1 -c"$conns" -d1s -H 'Host: x' "$url" >/dev/null
            read -r u0 s0 < <(cpu_ticks "$pid")
            raw="$OUT/wrk-$round-$rt-$conns.txt"
            taskset -c 1 wrk -t1 -c"$conns" -d"$DURATION" -H 'Host: x' --latency "$url" >"$raw"
            read -r u1 s1 < <(cpu_ticks "$pid")
            hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
            kill "$pid"
            wait "$pid" 2>/dev/null || true

            reqs=$(awk '/requests in/ {print $1}' "$raw")
            secs=$(awk '/requests in/ {sub(/s,$/, "", $4); print $4}' "$raw")
            rps=$(awk '/^Requests\/sec/ {print $2}' "$raw")
            p50=$(to_us "$(awk '$1 == "50%" {print $2}' "$raw")")
            p99=$(to_us "$(awk '$1 == "99%" {print $2}' "$raw")")
            errors=$(awk '/Socket errors|Non-2xx/ {s = s $0 "; "} END {print (s == "" ? "none" : s)}' "$raw")
            if [ -z "$reqs" ] || [ "$reqs" -eq 0 ]; then
                echo "error: wrk completed no requests against $rt (see $raw)" >&2
                exit 1
            fi
            awk -v r="$round" -v rt="$rt" -v c="$conns" -v rps="$rps" -v p50="$p50" -v p99="$p99" \
                -v du=$((u1 - u0)) -v ds=$((s1 - s0)) -v n="$reqs" -v secs="$secs" -v tick="$TICK" \
                -v hwm="$hwm" -v err="$errors" 'BEGIN {
                    us = 1000000 / tick
                    printf "%s\t%s\t%s\t%.0f\t%.0f\t%.0f\t%.2f\t%.2f\t%.0f\t%s\t%s\n", r, rt, c, rps,
                        p50, p99, du * us / n, ds * us / n, (du + ds) * 100 / tick / secs, hwm, err
                }' >>"$TSV"
            tail -n1 "$TSV" >&2
        done
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/load.txt"

summarize
