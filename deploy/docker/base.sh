#!/usr/bin/env bash
# Build the two local images every Trellis container image starts from. No registry is
# reachable from this project's machines, so nothing can be pulled: the root filesystem comes
# from Debian's own packages (debootstrap) and is imported with `docker import`.
#
#   trellis-base:bookworm     Debian bookworm, minbase variant, plus
#                               iptables nftables   the two rule back-ends `trellis init` drives
#                               python3 curl        the test applications (http.server) and client
#                               gcc libc6-dev       the C linker and libc the Rust build links with
#   trellis-builder:bookworm  trellis-base plus the host's Rust toolchain (rustc, cargo, std,
#                             rust-lld; ~0.5 GB of the 1.4 GB rustup installs) and the host's
#                             crate registry, so the Dockerfile's build stage compiles offline.
#
# The base (a few minutes of debootstrap) is made once per machine and kept. The builder (under
# a minute) is remade whenever the host's rustc or Cargo.lock changes: its labels record both.
#
# Usage: deploy/docker/base.sh [--rebuild]      (root; installs debootstrap when missing)
# Environment: TRELLIS_DEBIAN_MIRROR (default http://deb.debian.org/debian)
set -euo pipefail
cd "$(dirname "$0")/../.."

BASE=trellis-base:bookworm
BUILDER=trellis-builder:bookworm
MIRROR=${TRELLIS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=iptables,nftables,python3,curl,gcc,libc6-dev,ca-certificates
rebuild=0
[ "${1:-}" = "--rebuild" ] && rebuild=1

die() { echo "deploy/docker/base.sh: $*" >&2; exit 1; }

docker info >/dev/null 2>&1 ||
  die "the Docker engine is not reachable ('docker info' fails): start dockerd first"
[ "$(id -u)" = 0 ] || die "debootstrap needs root (run with sudo)"

work=$(mktemp -d /tmp/trellis-docker-base.XXXXXX)
trap 'rm -rf "$work"' EXIT

# --- trellis-base: debootstrap → docker import ----------------------------------------------
if [ $rebuild = 1 ] || ! docker image inspect "$BASE" >/dev/null 2>&1; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    echo "== installing debootstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
  fi
  echo "== debootstrap bookworm (minbase + $PACKAGES) from $MIRROR"
  started=$SECONDS
  debootstrap --variant=minbase --include="$PACKAGES" bookworm "$work/rootfs" "$MIRROR" \
    >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  # Nothing in the image needs the package cache or the lists; keep the import small.
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
  echo "== docker import $BASE ($(du -sh "$work/rootfs" | cut -f1), debootstrap took $((SECONDS - started)) s)"
  tar -C "$work/rootfs" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase bookworm + $PACKAGES" - "$BASE" >/dev/null
  rm -rf "$work/rootfs"
fi

# --- trellis-builder: the host's toolchain and crates on top ---------------------------------
sysroot=$(rustc --print sysroot) || die "no Rust toolchain on this host (rustc --print sysroot failed)"
rustc_version=$(rustc --version)
lock_sum=$(sha256sum Cargo.lock | cut -d' ' -f1)
cargo_home=${CARGO_HOME:-$HOME/.cargo}
have=$(docker image inspect -f '{{index .Config.Labels "trellis.rustc"}}|{{index .Config.Labels "trellis.cargo-lock"}}' \
  "$BUILDER" 2>/dev/null || true)
if [ $rebuild = 1 ] || [ "$have" != "$rustc_version|$lock_sum" ]; then
  # Every crate Cargo.lock names must be in the registry the builder gets (a clean CI clone
  # may not have fetched them yet; this is the one step that needs crates.io).
  cargo fetch --locked >/dev/null
  ctx=$work/builder
  mkdir -p "$ctx/rust/lib/rustlib" "$ctx/cargo"
  # Hard links where the host's files are on the same file system (no copy), copies elsewhere.
  cp -al "$sysroot/bin/rustc" "$sysroot/bin/cargo" "$ctx/rust/" 2>/dev/null ||
    cp -a "$sysroot/bin/rustc" "$sysroot/bin/cargo" "$ctx/rust/"
  mkdir -p "$ctx/rust/bin" && mv "$ctx/rust/rustc" "$ctx/rust/cargo" "$ctx/rust/bin/"
  cp -al "$sysroot"/lib/*.so* "$ctx/rust/lib/" 2>/dev/null || cp -a "$sysroot"/lib/*.so* "$ctx/rust/lib/"
  host=$(rustc -vV | sed -n 's/^host: //p')
  cp -al "$sysroot/lib/rustlib/$host" "$ctx/rust/lib/rustlib/" 2>/dev/null ||
    cp -a "$sysroot/lib/rustlib/$host" "$ctx/rust/lib/rustlib/"
  cp -al "$cargo_home/registry/index" "$cargo_home/registry/cache" "$ctx/cargo/" 2>/dev/null ||
    cp -a "$cargo_home/registry/index" "$cargo_home/registry/cache" "$ctx/cargo/"
  mkdir -p "$ctx/cargo/registry" && mv "$ctx/cargo/index" "$ctx/cargo/cache" "$ctx/cargo/registry/"
  cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $BASE
COPY rust /opt/rust
COPY cargo /opt/cargo
ENV PATH=/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CARGO_HOME=/opt/cargo CARGO_NET_OFFLINE=true
LABEL trellis.rustc="$rustc_version" trellis.cargo-lock="$lock_sum"
RUN rustc --version && cargo --version
DOCKERFILE
  echo "== docker build $BUILDER ($rustc_version, $(du -shL "$ctx" | cut -f1) of toolchain and crates)"
  old=$(docker image inspect -f '{{.Id}}' "$BUILDER" 2>/dev/null || true)
  docker build -q -t "$BUILDER" "$ctx" >/dev/null
  # The builder it replaces (about 1 GB) would stay behind untagged.
  new=$(docker image inspect -f '{{.Id}}' "$BUILDER")
  if [ -n "$old" ] && [ "$old" != "$new" ]; then
    docker rmi "$old" >/dev/null 2>&1 || true
  fi
fi
echo "== local base images ready: $BASE, $BUILDER"
