#!/usr/bin/env bash
# bench/e2e.sh on a machine that has neither a Rust toolchain nor a package registry: the
# 16-core machine the `device` tool lends (quiet, unlike the shared 2-core VM, so each of the
# proxy, the upstream and the load generator gets a core of its own).
#
# Prepare here, on the build machine (Debian bookworm):
#   bash bench/device_e2e.sh --prepare        # fills .devbench/ (ignored by git)
# then run on the other machine, from the repository root, with .devbench carried along:
#   bash bench/device_e2e.sh                  # prints the report; raw runs in $OUT if set
#
# `--prepare` builds trellis, loadgen and floor_relay (release) and unpacks Debian's haproxy,
# nginx and wrk with every library they load, glibc included. Each program then runs through
# the machine's own loader and glibc when they are at least bookworm's, else through the
# carried ones (`ld-linux-x86-64.so.2 --library-path ...`); the other libraries always come
# from .devbench.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=$PWD/.devbench

if [ "${1:-}" = --prepare ]; then
  grep -qx '/.devbench/' .git/info/exclude 2>/dev/null || echo '/.devbench/' >>.git/info/exclude
  rm -rf "$DEV" && mkdir -p "$DEV/debs" "$DEV/root" "$DEV/bin"
  cargo build --release --quiet --bin trellis -p trellis
  cargo build --release --quiet -p trellis-bench --bin loadgen --bin floor_relay
  for b in trellis loadgen floor_relay; do
    cp "target/release/$b" "$DEV/bin/$b" && strip "$DEV/bin/$b"
  done
  (cd "$DEV/debs" && apt-get download haproxy nginx wrk liblua5.3-0 libluajit-5.1-2 \
    libpcre2-8-0 libssl3 libcrypt1 zlib1g libc6 libsystemd0 libcap2 libgcrypt20 libgpg-error0 \
    liblz4-1 liblzma5 libzstd1 libopentracing1 libopentracing-c-wrapper0 libstdc++6 libgcc-s1)
  for f in "$DEV"/debs/*.deb; do dpkg -x "$f" "$DEV/root"; done
  rm -rf "$DEV/debs" "$DEV/root/usr/share" "$DEV/root/etc" "$DEV/root/var" \
    "$DEV/root/usr/lib/x86_64-linux-gnu/gconv"
  du -sh "$DEV"
  exit 0
fi

[ -d "$DEV/root" ] || { echo "no $DEV: run 'bash bench/device_e2e.sh --prepare' first" >&2; exit 1; }
WRAP=$(mktemp -d /tmp/devbench-bin.XXXXXX)
# Where the machine's glibc is at least bookworm's (2.36), its own loader and libc run the
# programs and only the other libraries come from .devbench (two glibcs in one process
# crash); otherwise the carried loader and libc run them.
glibc=$(ldd --version 2>/dev/null | head -1 | awk '{print $NF}')
if [ -n "$glibc" ] && [ "$(printf '%s\n2.36\n' "$glibc" | sort -V | head -1)" = 2.36 ]; then
  mkdir -p "$WRAP/lib"
  for so in "$DEV"/root/lib/x86_64-linux-gnu/*.so* "$DEV"/root/usr/lib/x86_64-linux-gnu/*.so*; do
    case $(basename "$so") in
      ld-linux* | libc.so* | libc-* | libm.so* | libmvec* | libpthread* | libdl.so* | librt.so* | \
        libresolv* | libutil* | libanl* | libnss_* | libnsl* | libthread_db* | libBrokenLocale* | \
        libc_malloc_debug* | libmemusage* | libpcprofile*) ;;
      *) ln -sf "$so" "$WRAP/lib/" ;;
    esac
  done
  wrap() { # name, program
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$WRAP/lib" "$2" >"$WRAP/$1"
    chmod +x "$WRAP/$1"
  }
else
  LIBS=$DEV/root/lib/x86_64-linux-gnu:$DEV/root/usr/lib/x86_64-linux-gnu
  LOADER=$DEV/root/lib64/ld-linux-x86-64.so.2
  wrap() { # name, program
    printf '#!/bin/sh\nexec %s --library-path %s %s "$@"\n' "$LOADER" "$LIBS" "$2" >"$WRAP/$1"
    chmod +x "$WRAP/$1"
  }
fi
wrap haproxy "$DEV/root/usr/sbin/haproxy"
wrap nginx "$DEV/root/usr/sbin/nginx"
wrap wrk "$DEV/root/usr/bin/wrk"
mkdir -p "$WRAP/prebuilt"
for b in trellis loadgen floor_relay; do wrap "prebuilt/$b" "$DEV/bin/$b"; done
export PATH=$WRAP:$PATH

echo "== machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), Linux $(uname -r), glibc $(ldd --version 2>/dev/null | head -1 | awk '{print $NF}')"
# Three CPUs on three different physical cores, none of them CPU 0 (interrupts).
mapfile -t picks < <(lscpu -p=CPU,CORE 2>/dev/null | grep -v '^#' | awk -F, '$1 > 0 && !seen[$2]++ {print $1}' | awk 'NR % 2 == 1' | head -3)
if [ "${#picks[@]}" -lt 3 ]; then picks=(2 6 10); fi
export PROXY_CPU=${PROXY_CPU:-${picks[0]}} UPSTREAM_CPU=${UPSTREAM_CPU:-${picks[1]}} CLIENT_CPU=${CLIENT_CPU:-${picks[2]}}
echo "== proxy CPU $PROXY_CPU, upstream CPU $UPSTREAM_CPU, load generator CPU $CLIENT_CPU"
haproxy -v | head -1
nginx -v
PREBUILT_DIR=$WRAP/prebuilt RESULTS_MD=/dev/null bash bench/e2e.sh
if [ -n "${OUT:-}" ]; then cp "${TMPDIR:-/tmp}/trellis-e2e-bench-last.jsonl" "$OUT/runs.jsonl"; fi
