#!/usr/bin/env bash
# Gather the runtime image's whole root filesystem into OUT (the Dockerfile's build stage runs
# this; the runtime stage is `FROM scratch` + this tree). It holds:
#   /usr/local/bin/trellis             proxy, control plane and `trellis init`, one binary
#   iptables-legacy / ip6tables-legacy (+ -save, -restore) and nft, the rule back-ends
#                                      `trellis init` chooses between, with iptables' extensions
#   exactly the shared libraries those executables load (ldd), the dynamic loader and an
#   ld.so.cache for this tree, /etc/passwd and /etc/group naming istio-proxy (1337, the UID
#   the interception rules exempt), /etc/protocols, and writable /tmp and /run (xtables.lock).
# Nothing else: no shell, no package manager.
#
# Usage: runtime-rootfs.sh TRELLIS_BINARY OUT
set -euo pipefail
[ $# = 2 ] || { echo "usage: $0 TRELLIS_BINARY OUT" >&2; exit 2; }
binary=$1 out=$2
[ -x "$binary" ] || { echo "$0: $binary is not an executable" >&2; exit 1; }

multiarch=$(gcc -print-multiarch) # x86_64-linux-gnu
xtables_dir=/usr/lib/$multiarch/xtables
mkdir -p "$out/usr/local/bin" "$out/usr/sbin" "$out/etc" "$out/tmp" "$out/run" "$out/usr/lib/$multiarch"
chmod 1777 "$out/tmp"

install -m 0755 "$binary" "$out/usr/local/bin/trellis"
cp -a /usr/sbin/xtables-legacy-multi /usr/sbin/nft "$out/usr/sbin/"
# iptables is a multi-call binary: the name it is started under picks the tool. This image
# has only the legacy back-end, so the plain names are it too.
for tool in iptables ip6tables; do
  for suffix in "" -save -restore; do
    ln -s xtables-legacy-multi "$out/usr/sbin/$tool-legacy$suffix"
    ln -s xtables-legacy-multi "$out/usr/sbin/$tool$suffix"
  done
done
cp -a "$xtables_dir" "$out/usr/lib/$multiarch/"

# Every shared object any of these executables or iptables' extensions load, at the path the
# loader found it (ldd's resolution), dereferenced.
objects=("$binary" /usr/sbin/xtables-legacy-multi /usr/sbin/nft "$xtables_dir"/*.so)
ldd "${objects[@]}" 2>/dev/null |
  awk '/=> \// { print $3 } /^\t\/[^ ]+ \(0x/ { print $1 }' | sort -u |
  while read -r lib; do
    cp -L --parents "$lib" "$out/"
  done
[ -e "$out/lib64/ld-linux-x86-64.so.2" ] || { echo "$0: no dynamic loader gathered" >&2; exit 1; }
ldconfig -r "$out"

cp /etc/protocols "$out/etc/protocols"
cat >"$out/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/usr/sbin/nologin
istio-proxy:x:1337:1337:istio-proxy:/tmp:/usr/sbin/nologin
PASSWD
cat >"$out/etc/group" <<GROUP
root:x:0:
istio-proxy:x:1337:
GROUP
