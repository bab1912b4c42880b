#!/usr/bin/env bash
# The one command that runs every Trellis test (README: "Run every test").
# Installs the real peers the end-to-end and TLS tests use when they are missing (CI runs as
# root; openssl for the CA and mTLS peer tests),
# then checks formatting, lints, and runs the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# tool → Debian package (sha256sum comes with coreutils).
# nft, ip and setpriv: the `trellis init` capture tests (tests/e2e_capture.rs).
# debootstrap: the local base image of the container tests (deploy/docker/base.sh).
for tool in curl python3 sha256sum iptables openssl nft ip setpriv debootstrap; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    case "$tool" in
      sha256sum) need+=(coreutils) ;;
      nft) need+=(nftables) ;;
      ip) need+=(iproute2) ;;
      setpriv) need+=(util-linux) ;;
      *) need+=("$tool") ;;
    esac
  fi
done
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing missing test tools: ${need[*]}"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  fi
fi

# Python modules of the injection and install tests: Python's own JSON Patch implementation
# (applies the webhook's patches), and the validators of the manifests (Kubernetes' OpenAPI
# schemas bundled by kubernetes-validate; jsonschema for the CRD schemas).
if ! python3 -c "import jsonpatch, jsonschema, kubernetes_validate, yaml" 2>/dev/null; then
  echo "== installing Python test modules: jsonpatch jsonschema kubernetes-validate PyYAML"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip
    else
      sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip
    fi
  fi
  python3 -m pip install --quiet jsonpatch jsonschema kubernetes-validate PyYAML \
    || python3 -m pip install --quiet --break-system-packages jsonpatch jsonschema kubernetes-validate PyYAML
fi
# tests/e2e_jwt.rs mints its tokens with PyJWT (RSA signing through `cryptography`).
if ! python3 -c "import jwt, cryptography" >/dev/null 2>&1; then
  echo "== installing PyJWT and cryptography for the JWT end-to-end test"
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq python3-jwt python3-cryptography || true
  # The python3 on PATH may not be Debian's (pyenv): then pip installs for it.
  python3 -c "import jwt, cryptography" >/dev/null 2>&1 \
    || python3 -m pip install --quiet pyjwt cryptography \
    || python3 -m pip install --quiet --break-system-packages pyjwt cryptography
fi
# The container tests (tests/e2e_docker.rs) need this machine's Docker engine: say so now,
# not after the build, when it is missing or stopped.
if ! docker info >/dev/null 2>&1; then
  echo "error: the Docker engine is not reachable ('docker info' failed): start dockerd;" \
    "tests/e2e_docker.rs runs Trellis in real containers and fails without it" >&2
  exit 1
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test (end-to-end suite on the default backend: io_uring where it works)"
cargo test --workspace
echo "== end-to-end suite again on the epoll backend"
TRELLIS_E2E_BACKEND=epoll cargo test -p trellis-io \
  --test e2e_traffic --test e2e_bulk --test e2e_faults --test e2e_hostile --test e2e_reload \
  --test e2e_framing --test e2e_client_conns
