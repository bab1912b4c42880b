#!/usr/bin/env bash
# Line, branch and region coverage of engine/src under the simulator's seed sweep.
#
#   scripts/coverage.sh                         # seeds 0..500 (`trellis sim --seeds 0..500`)
#   scripts/coverage.sh --seeds 0..1000         # the CI sweep's seed range
#   scripts/coverage.sh --with-unit-tests       # also: engine unit tests + sweep, combined
#
# A tool to run by hand, not part of the test command. How it works:
#  - builds the `trellis` binary (release profile) with `-C instrument-coverage` and, for branch
#    coverage, `-Z coverage-options=branch` (a nightly flag: the toolchain is `nightly`, or
#    $COVERAGE_TOOLCHAIN) into target/coverage/build, so normal builds are untouched;
#  - runs `trellis sim --seeds A..B --jobs 1` (each seed twice, as always; one thread so the
#    non-atomic profile counters cannot lose updates: the figures are deterministic);
#  - merges the profile with llvm-profdata and reads it with llvm-cov, both of the LLVM major
#    version that rustc uses (Debian's `llvm-NN`, installed with apt-get when missing);
#  - prints totals and a per-file table for engine/src (sorted by uncovered branches), and writes
#    target/coverage/{sim,combined}/: lcov.info, html/index.html, llvm-cov-report.txt (llvm-cov's
#    own table), summary.md (the tables printed here) and uncovered.txt (uncovered lines and
#    branch outcomes per file).
#
# Counting: every figure is over engine/src without test code (the *_tests.rs / tests.rs /
# tests/ files and the inline `mod tests`), an outcome or region that occurs in several
# instantiations or binaries counts once, covered if any copy ran. A branch is two outcomes
# (true and false), as llvm-cov counts them. With --with-unit-tests the engine's own tests
# (`cargo test -p trellis-engine --lib --tests`, run one thread) are added to the same sweep.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SEEDS=0..500
UNIT=0
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) SEEDS=${2:?--seeds needs A..B}; shift 2 ;;
    --seeds=*) SEEDS=${1#--seeds=}; shift ;;
    --with-unit-tests) UNIT=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "coverage.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $SEEDS =~ ^[0-9]+\.\.[0-9]+$ ]] || { echo "coverage.sh: --seeds wants A..B, got '$SEEDS'" >&2; exit 2; }

die() { echo "coverage.sh: error: $*" >&2; exit 1; }
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else return 1; fi
}
APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  if [ $APT_UPDATED = 0 ]; then as_root apt-get update -qq || return 1; APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || return 1
}

# ---- toolchain --------------------------------------------------------------------------------
TOOLCHAIN=${COVERAGE_TOOLCHAIN:-nightly}
command -v rustup >/dev/null 2>&1 || die "rustup not found (needed to pick the '$TOOLCHAIN' toolchain)"
RUSTC_VV=$(rustup run "$TOOLCHAIN" rustc -vV 2>/dev/null) \
  || die "toolchain '$TOOLCHAIN' is not installed. Branch coverage needs a nightly rustc \
(-Z coverage-options=branch): 'rustup toolchain install nightly --profile minimal', or set \
COVERAGE_TOOLCHAIN to an installed nightly. COVERAGE_TOOLCHAIN=stable gives line and region \
coverage only (no branch figures)."
RUSTC_RELEASE=$(sed -n 's/^release: //p' <<<"$RUSTC_VV")
LLVM_VERSION=$(sed -n 's/^LLVM version: //p' <<<"$RUSTC_VV")
LLVM_MAJOR=${LLVM_VERSION%%.*}
[ -n "$LLVM_MAJOR" ] || die "cannot read rustc's LLVM version from 'rustc -vV'"
FLAGS="-C instrument-coverage"
if [[ $RUSTC_RELEASE == *nightly* || $RUSTC_RELEASE == *dev* ]]; then
  FLAGS="$FLAGS -Z coverage-options=branch"
  BRANCHES=1
else
  echo "coverage.sh: warning: $TOOLCHAIN ($RUSTC_RELEASE) is not a nightly: no branch coverage" >&2
  BRANCHES=0
fi

# ---- LLVM tools of rustc's LLVM major version ---------------------------------------------------
find_llvm_tool() { # name -> path of a tool whose major version is LLVM_MAJOR, or nothing
  local name=$1 sysroot cand
  sysroot=$(rustup run "$TOOLCHAIN" rustc --print sysroot)
  for cand in ${LLVM_BIN:+"$LLVM_BIN/$name"} \
      "$sysroot"/lib/rustlib/*/bin/"$name" \
      "/usr/lib/llvm-$LLVM_MAJOR/bin/$name" \
      "$(command -v "$name-$LLVM_MAJOR" 2>/dev/null || true)" \
      "$(command -v "$name" 2>/dev/null || true)"; do
    [ -n "$cand" ] && [ -x "$cand" ] || continue
    if "$cand" --version 2>/dev/null | grep -Eq "LLVM version $LLVM_MAJOR\."; then
      echo "$cand"; return 0
    fi
  done
  return 0
}
PROFDATA=$(find_llvm_tool llvm-profdata)
LLVMCOV=$(find_llvm_tool llvm-cov)
if [ -z "$PROFDATA" ] || [ -z "$LLVMCOV" ]; then
  echo "== installing llvm-$LLVM_MAJOR (llvm-profdata and llvm-cov matching rustc's LLVM $LLVM_VERSION)"
  apt_install "llvm-$LLVM_MAJOR" || die "llvm-profdata/llvm-cov of LLVM $LLVM_MAJOR not found and \
'apt-get install llvm-$LLVM_MAJOR' failed. Install LLVM $LLVM_MAJOR's tools and point LLVM_BIN at \
their folder (the rustup component llvm-tools also works)."
  PROFDATA=$(find_llvm_tool llvm-profdata)
  LLVMCOV=$(find_llvm_tool llvm-cov)
  [ -n "$PROFDATA" ] && [ -n "$LLVMCOV" ] || die "llvm-$LLVM_MAJOR installed but its llvm-profdata/llvm-cov were not found"
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "== installing python3 (for the summary tables)"
  apt_install python3 || die "python3 not found and 'apt-get install python3' failed"
fi
# Demangler for telling test functions apart (llvm-cxxfilt reads Rust v0 names); optional.
CXXFILT="$(dirname "$LLVMCOV")/llvm-cxxfilt"
[ -x "$CXXFILT" ] || CXXFILT=$(command -v "llvm-cxxfilt-$LLVM_MAJOR" || command -v llvm-cxxfilt || true)
[ -n "$CXXFILT" ] || die "llvm-cxxfilt (LLVM $LLVM_MAJOR) not found next to $LLVMCOV"

OUT=$ROOT/target/coverage
BUILD=$OUT/build
PROF=$OUT/profraw
rm -rf "$PROF" "$OUT/sim" "$OUT/combined" "$OUT/build-profraw"
rm -f "$OUT"/*.profdata "$OUT"/unit-*.log "$OUT/sim.log"
mkdir -p "$PROF" "$OUT/build-profraw"
echo "== toolchain: $TOOLCHAIN (rustc $RUSTC_RELEASE, LLVM $LLVM_VERSION); $PROFDATA; $LLVMCOV"
echo "== RUSTFLAGS=\"$FLAGS\", target dir target/coverage/build"

# Instrumented build scripts and proc macros write profiles when they run during the build:
# keep those out of the source tree and out of the figures.
export CARGO_TARGET_DIR=$BUILD RUSTFLAGS="$FLAGS" LLVM_PROFILE_FILE="$OUT/build-profraw/%m_%p.profraw"
unset CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS
cargo_cov() { rustup run "$TOOLCHAIN" cargo "$@"; }

echo "== building trellis (release, instrumented)"
cargo_cov build --release --locked --bin trellis -q
BIN=$BUILD/release/trellis

echo "== trellis sim --seeds $SEEDS --jobs 1"
sim_rc=0
LLVM_PROFILE_FILE="$PROF/sim-%p-%m.profraw" "$BIN" sim --seeds "$SEEDS" --jobs 1 \
  >"$OUT/sim.log" 2>&1 || sim_rc=$?
grep -E '^(runs:|wall )' "$OUT/sim.log" | sed 's/^/   /' || true
if [ $sim_rc != 0 ]; then
  echo "coverage.sh: warning: the sweep exited $sim_rc (an invariant broke? see target/coverage/sim.log); coverage is of the run as it went" >&2
fi
ls "$PROF"/sim-*.profraw >/dev/null 2>&1 || die "the sweep wrote no profile (see target/coverage/sim.log)"
"$PROFDATA" merge -sparse "$PROF"/sim-*.profraw -o "$OUT/sim.profdata"

OBJECTS=("$BIN")
if [ $UNIT = 1 ]; then
  echo "== building the engine's unit tests (instrumented)"
  cargo_cov test -p trellis-engine --lib --tests --no-run --locked -q --message-format=json \
    >"$OUT/unit-build.json"
  mapfile -t TESTS < <(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])' "$OUT/unit-build.json" | sort)
  [ ${#TESTS[@]} -gt 0 ] || die "no engine test binaries found"
  for t in "${TESTS[@]}"; do
    echo "== $(basename "$t") --test-threads=1"
    (cd "$ROOT/engine" && LLVM_PROFILE_FILE="$PROF/unit-%p-%m.profraw" "$t" --test-threads=1 -q \
      >"$OUT/unit-$(basename "$t").log" 2>&1) \
      || die "$(basename "$t") failed (see target/coverage/unit-$(basename "$t").log)"
    grep -E '^test result' "$OUT/unit-$(basename "$t").log" | sed 's/^/   /' || true
    OBJECTS+=("$t")
  done
  "$PROFDATA" merge -sparse "$PROF"/sim-*.profraw "$PROF"/unit-*.profraw -o "$OUT/combined.profdata"
fi

# ---- reports -------------------------------------------------------------------------------------
report() { # name profdata objects...
  local name=$1 profdata=$2; shift 2
  local dir=$OUT/$name args=() o
  mkdir -p "$dir"
  args=("$1"); shift
  for o in "$@"; do args+=(-object "$o"); done
  local common=(-instr-profile="$profdata" "-ignore-filename-regex=(_tests|/tests)\.rs$|/tests/")
  "$LLVMCOV" report "${args[@]}" "${common[@]}" "$ROOT/engine/src" >"$dir/llvm-cov-report.txt"
  "$LLVMCOV" export -format=text "${args[@]}" "${common[@]}" "$ROOT/engine/src" >"$dir/export.json"
  "$LLVMCOV" export -format=lcov "${args[@]}" "${common[@]}" "$ROOT/engine/src" >"$dir/lcov.info"
  "$LLVMCOV" show -format=html -output-dir="$dir/html" -show-branches=count \
    -show-line-counts-or-regions -Xdemangler="$CXXFILT" "${args[@]}" "${common[@]}" "$ROOT/engine/src"
}
report sim "$OUT/sim.profdata" "${OBJECTS[0]}"
[ $UNIT = 1 ] && report combined "$OUT/combined.profdata" "${OBJECTS[@]}"

python3 - "$ROOT" "$OUT" "$SEEDS" "$UNIT" "$BRANCHES" "$CXXFILT" "$TOOLCHAIN ($RUSTC_RELEASE)" <<'PY'
import json, os, re, subprocess, sys
root, out, seeds, unit, branches, cxxfilt, toolchain = sys.argv[1:8]
unit, branches = unit == "1", branches == "1"
src = os.path.join(root, "engine", "src") + os.sep
test_file = re.compile(r"(^|/)(tests|[a-z0-9_]+_tests)\.rs$|(^|/)tests/")
test_mod = re.compile(r"::(tests|[a-z0-9_]+_tests)(::|$)")

def is_test_fn(demangled):
    """Defined in a test module: judged on the path of the function itself (or of the type of
    `<Type as Trait>::f`), not on generic arguments, so production generics instantiated with
    test types stay production code."""
    name = demangled[1:] if demangled.startswith("<") else demangled
    return bool(test_mod.search(re.split(r"[<> ]|::\{", name, maxsplit=1)[0]))

def rel(f):
    return f[len(src):] if f.startswith(src) else None

def engine_file(f):
    r = rel(f)
    return r is not None and not test_file.search(r)

def load(name):
    """Positional union of one report: dicts keyed by source position."""
    d = json.load(open(os.path.join(out, name, "export.json")))["data"][0]
    fns = [f for f in d["functions"] if any(engine_file(n) for n in f["filenames"])]
    names = subprocess.run([cxxfilt], input="\n".join(f["name"] for f in fns),
                           capture_output=True, text=True, check=True).stdout.split("\n")
    regions, brs, funcs, test_spans = {}, {}, {}, {}
    for f, dn in zip(fns, names):
        files = f["filenames"]
        if is_test_fn(dn):  # inline `mod tests` code: out of the figures, lines too
            for r in f["regions"]:
                if engine_file(files[r[5]]):
                    test_spans.setdefault(rel(files[r[5]]), []).append((r[0], r[2]))
            continue
        seen = {}
        first = None
        for r in f["regions"]:
            fn = files[r[5]]
            if r[7] != 0 or not engine_file(fn):  # code regions only
                continue
            pos = (rel(fn), r[0], r[1], r[2], r[3])
            if first is None:
                first = pos
            k = pos + (seen.setdefault(pos, 0),)
            seen[pos] += 1
            regions[k] = regions.get(k, False) or r[4] > 0
        seen = {}
        for b in f["branches"]:
            fn = files[b[6]]
            if not engine_file(fn):
                continue
            pos = (rel(fn), b[0], b[1], b[2], b[3])
            k = pos + (seen.setdefault(pos, 0),)
            seen[pos] += 1
            t, e = brs.get(k, (False, False))
            brs[k] = (t or b[4] > 0, e or b[5] > 0)
        if first is not None:
            k = first[:3]
            funcs[k] = funcs.get(k, False) or f["count"] > 0
    lines = {}
    cur = None
    for line in open(os.path.join(out, name, "lcov.info")):
        if line.startswith("SF:"):
            cur = rel(line[3:].strip())
            if cur is not None and test_file.search(cur):
                cur = None
        elif line.startswith("DA:") and cur is not None:
            n, c = line[3:].split(",")[:2]
            n = int(n)
            if any(a <= n <= b for a, b in test_spans.get(cur, ())):
                continue
            lines[(cur, n)] = lines.get((cur, n), False) or int(c) > 0
    return dict(lines=lines, branches=brs, regions=regions, functions=funcs)

def per_file(cov):
    t = {}
    def add(f, what, total, hit):
        e = t.setdefault(f, {k: [0, 0] for k in ("lines", "branches", "regions", "functions")})
        e[what][0] += total
        e[what][1] += hit
    for (f, *_), c in cov["lines"].items():
        add(f, "lines", 1, int(c))
    for (f, *_), (a, b) in cov["branches"].items():
        add(f, "branches", 2, int(a) + int(b))
    for (f, *_), c in cov["regions"].items():
        add(f, "regions", 1, int(c))
    for (f, *_), c in cov["functions"].items():
        add(f, "functions", 1, int(c))
    return t

def pct(total, hit):
    return "-" if total == 0 else f"{100.0 * hit / total:.1f}%"

def cell(e):
    return f"{e[1]}/{e[0]} ({pct(*e)})"

def totals(t):
    s = {k: [0, 0] for k in ("lines", "branches", "regions", "functions")}
    for e in t.values():
        for k in s:
            s[k][0] += e[k][0]
            s[k][1] += e[k][1]
    return s

def ranges(ns):
    ns = sorted(ns)
    outl, i = [], 0
    while i < len(ns):
        j = i
        while j + 1 < len(ns) and ns[j + 1] == ns[j] + 1:
            j += 1
        outl.append(str(ns[i]) if i == j else f"{ns[i]}-{ns[j]}")
        i = j + 1
    return ",".join(outl)

def write(name, cov, base=None):
    t = per_file(cov)
    s = totals(t)
    only = {}
    if base is not None:  # outcomes reached only with the unit tests
        for k, (a, b) in cov["branches"].items():
            a0, b0 = base["branches"].get(k, (False, False))
            only[k[0]] = only.get(k[0], 0) + int(a and not a0) + int(b and not b0)
    rows = sorted(t.items(), key=lambda kv: (-(kv[1]["branches"][0] - kv[1]["branches"][1]),
                                             -(kv[1]["lines"][0] - kv[1]["lines"][1]), kv[0]))
    hdr = "| file | uncovered branches | branches | lines | regions | functions |"
    sep = "|---|---:|---:|---:|---:|---:|"
    if base is not None:
        hdr += " branch outcomes only the unit tests reach |"
        sep += "---:|"
    md = [hdr, sep]
    for f, e in rows:
        row = (f"| {f} | {e['branches'][0] - e['branches'][1]} | {cell(e['branches'])} | "
               f"{cell(e['lines'])} | {cell(e['regions'])} | {cell(e['functions'])} |")
        if base is not None:
            row += f" {only.get(f, 0)} |"
        md.append(row)
    tot = (f"| **total** | {s['branches'][0] - s['branches'][1]} | {cell(s['branches'])} | "
           f"{cell(s['lines'])} | {cell(s['regions'])} | {cell(s['functions'])} |")
    if base is not None:
        tot += f" {sum(only.values())} |"
    md.append(tot)
    what = (f"`trellis sim --seeds {seeds}`" if name == "sim" else
            f"`trellis sim --seeds {seeds}` + `cargo test -p trellis-engine --lib --tests`")
    head = [f"engine/src coverage, {what}, {toolchain}:",
            f"  lines     {cell(s['lines'])}",
            f"  branches  {cell(s['branches']) if branches else 'not measured (needs nightly)'}",
            f"  regions   {cell(s['regions'])}",
            f"  functions {cell(s['functions'])}"]
    text = "\n".join(head) + "\n\n" + "\n".join(md) + "\n"
    open(os.path.join(out, name, "summary.md"), "w").write(text)
    unc = []
    for f, _ in rows:
        ls = [n for (ff, n), c in cov["lines"].items() if ff == f and not c]
        bs = sorted({(k[1], side) for k, v in cov["branches"].items() if k[0] == f
                     for side, hit in (("T", v[0]), ("F", v[1])) if not hit})
        if ls or bs:
            unc.append(f"{f}\n  lines: {ranges(ls)}\n  branch outcomes not taken (line:side): "
                       + " ".join(f"{n}:{side}" for n, side in bs))
    open(os.path.join(out, name, "uncovered.txt"), "w").write("\n".join(unc) + "\n")
    print(text)
    return s

sim = load("sim")
write("sim", sim)
if unit:
    write("combined", load("combined"), base=sim)
PY
echo "== reports: target/coverage/sim/{summary.md,uncovered.txt,lcov.info,html/index.html}"
[ $UNIT = 1 ] && echo "== and target/coverage/combined/ (sweep + engine unit tests)"
exit 0
