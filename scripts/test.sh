#!/usr/bin/env bash
# test.sh - THE test command of ironlun (README; .ci/run calls it).
#
#   scripts/test.sh            everything: deps, lint, release build, cargo tests, end-to-end suites
#   scripts/test.sh --quick    the same without the kernel-initiator guest (tests/e2e/kguest.sh)
#   scripts/test.sh --long     longer fio runs in the guest (KGUEST_RUNTIME=10)
#   options: --no-deps (don't run scripts/install-test-deps.sh), --server tgt (run the end-to-end
#            suites against the peer target tgt instead of ironlun, to check the suites themselves),
#            --only SUITE[,SUITE] (end-to-end suites to run: libiscsi-tools,chap,conformance,kguest)
#
# Every step has a hard timeout and prints PASS/FAIL lines; logs go to test-out/.  The last line is
#   N passed, N failed, N skipped
# where the counts add up the cargo tests and the end-to-end checks (plus the lint and build steps).
# Exit status is non-zero when anything failed.  A client that cannot run here is a FAIL, or a SKIP
# that says so; never a pass.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

MODE=full DEPS=1 SERVER=ironlun ONLY=
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) MODE=quick ;;
    --long) MODE=long ;;
    --no-deps) DEPS=0 ;;
    --server) SERVER=${2:?--server needs ironlun or tgt}; shift ;;
    --only) ONLY=${2:?--only needs a list}; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

OUTDIR="$REPO/test-out"
mkdir -p "$OUTDIR"
RESULTS="$OUTDIR/results.txt"
: > "$RESULTS"
export E2E_OUT="$OUTDIR" E2E_SERVER="$SERVER"
T_START=$(date +%s)
P=0 F=0 S=0
STEPS=()

say() { printf '\n=== %s [%s, +%ss]\n' "$*" "$(date -u +%H:%M:%S)" "$(( $(date +%s) - T_START ))"; }
verdict() {  # verdict PASS|FAIL|SKIP NAME [DETAIL]
  echo "$1: $2${3:+  ($3)}" | tee -a "$RESULTS"
  case "$1" in PASS) P=$((P + 1)) ;; FAIL) F=$((F + 1)) ;; SKIP) S=$((S + 1)) ;; esac
}
step_done() { STEPS+=("$(printf '%-28s %-5s %5ss  %s' "$1" "$2" "$3" "${4:-}")"); }

# ------------------------------------------------------------------ 1. dependencies
if [ "$DEPS" = 1 ]; then
  say "install test dependencies (scripts/install-test-deps.sh)"
  t=$(date +%s)
  if timeout -k 10 1500 bash "$REPO/scripts/install-test-deps.sh" < /dev/null 2>&1 | tee "$OUTDIR/deps.log"; then
    step_done deps ok $(( $(date +%s) - t ))
  else
    verdict FAIL "install test dependencies" "see $OUTDIR/deps.log"
    step_done deps FAIL $(( $(date +%s) - t ))
  fi
fi

# ------------------------------------------------------------------ 2. lint the harness
say "shellcheck the test scripts"
t=$(date +%s)
if command -v shellcheck >/dev/null; then
  mapfile -t shfiles < <(find scripts tests/e2e tests/kguest benches .ci -type f \( -name '*.sh' -o -name run \) 2>/dev/null | sort)
  if shellcheck -x -S warning "${shfiles[@]}" > "$OUTDIR/shellcheck.log" 2>&1; then
    verdict PASS "shellcheck (${#shfiles[@]} scripts)"; step_done shellcheck ok $(( $(date +%s) - t ))
  else
    cat "$OUTDIR/shellcheck.log"; verdict FAIL "shellcheck" "see $OUTDIR/shellcheck.log"; step_done shellcheck FAIL $(( $(date +%s) - t ))
  fi
else
  verdict SKIP "shellcheck" "shellcheck is not installed"
fi

# ------------------------------------------------------------------ 3. release build
say "cargo build --release --workspace"
t=$(date +%s)
BUILD_OK=0
brc=0
timeout -k 30 2400 cargo build --release --workspace < /dev/null > "$OUTDIR/build.log" 2>&1 || brc=$?
grep -E '^error|Finished' "$OUTDIR/build.log" || true
if [ "$brc" = 0 ] && [ -x "$REPO/build/release/ironlun" ]; then
  BUILD_OK=1; verdict PASS "cargo build --release"; step_done "cargo build --release" ok $(( $(date +%s) - t ))
else
  tail -n 30 "$OUTDIR/build.log"
  verdict FAIL "cargo build --release" "see $OUTDIR/build.log"; step_done "cargo build --release" FAIL $(( $(date +%s) - t ))
fi

# ------------------------------------------------------------------ 4. cargo tests
# cargo_tests NAME LOG TIMEOUT ENV... -- CARGO-ARGS...: runs `cargo test CARGO-ARGS`, adds its counts
# to the totals and its failures to the results, and fails the step on a non-zero exit without a
# failing test (a compile error or a timeout).
cargo_tests() {
  local name=$1 log=$2 tmo=$3; shift 3
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  say "$name"
  local t; t=$(date +%s)
  local rc=0
  env "${envs[@]}" timeout -k 30 "$tmo" cargo test "$@" < /dev/null > "$log" 2>&1 || rc=$?
  grep -E '^test .* \.\.\. (FAILED|ignored)|^test result:|^error' "$log" || true
  local p f g
  read -r p f g < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1); if ($(i) ~ /^ignored;?$/) g += $(i-1) } }
    END { printf "%d %d %d\n", p, f, g }' "$log")
  P=$((P + p)); F=$((F + f)); S=$((S + g))
  sed -n "s/^test \(.*\) \.\.\. FAILED\$/FAIL: $name: \1/p" "$log" >> "$RESULTS"
  echo "$name: $p passed, $f failed, $g ignored (rc=$rc)"
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
    tail -n 30 "$log"
    verdict FAIL "$name" "exit status $rc without a failing test (compile error or timeout), see $log"
  fi
  step_done "$name" "$([ "$rc" = 0 ] && echo ok || echo FAIL)" $(( $(date +%s) - t )) "$p passed, $f failed, $g ignored"
}
cargo_tests "cargo test" "$OUTDIR/cargo-test.log" 1800 -- --workspace --release --no-fail-fast
# The release build masks integer overflow; the extent store's arithmetic (granule masks, extent
# offsets, generations) is also run with overflow checks and debug assertions on.
cargo_tests "cargo test (cow, debug)" "$OUTDIR/cargo-test-cow-debug.log" 900 IRONLUN_CRASH_POINTS=2000 -- -p ironlun-cow --no-fail-fast

# ------------------------------------------------------------------ 5. end-to-end suites
SUITES=(libiscsi-tools chap conformance kguest)
declare -A TMO=([libiscsi-tools]=300 [chap]=300 [conformance]=2400 [kguest]=2700)
[ "$MODE" = long ] && export KGUEST_RUNTIME=${KGUEST_RUNTIME:-10}
for s in "${SUITES[@]}"; do
  if [ -n "$ONLY" ] && ! [[ ",$ONLY," == *",$s,"* ]]; then continue; fi
  if [ "$s" = kguest ] && [ "$MODE" = quick ]; then
    verdict SKIP "e2e kguest" "--quick: the Linux kernel initiator suite was NOT run"; step_done "e2e $s" SKIP 0; continue
  fi
  say "e2e: tests/e2e/$s.sh (server: $SERVER, timeout ${TMO[$s]}s)"
  t=$(date +%s)
  if [ "$SERVER" = ironlun ] && [ "$BUILD_OK" != 1 ]; then
    verdict FAIL "e2e $s" "not run: no server binary (the release build failed)"; step_done "e2e $s" FAIL 0; continue
  fi
  r="$OUTDIR/$s.results"; : > "$r"
  { rc=0; E2E_RESULTS="$r" timeout -k 30 "${TMO[$s]}" bash "$REPO/tests/e2e/$s.sh" < /dev/null 2>&1 || rc=$?
    echo "$rc" > "$OUTDIR/$s.rc"; } | tee "$OUTDIR/$s.log"
  rc=$(cat "$OUTDIR/$s.rc")
  np=$(grep -c '^PASS:' "$r" || true); nf=$(grep -c '^FAIL:' "$r" || true); ns=$(grep -c '^SKIP:' "$r" || true)
  cat "$r" >> "$RESULTS"
  P=$((P + np)); F=$((F + nf)); S=$((S + ns))
  if ! grep -q "^RESULT $s:" "$OUTDIR/$s.log"; then
    verdict FAIL "e2e $s" "aborted (exit status $rc) before its RESULT line; its remaining checks did not run"; nf=$((nf + 1))
  elif [ "$rc" != 0 ] && [ "$nf" = 0 ]; then
    verdict FAIL "e2e $s" "exit status $rc without a failing check (timeout after ${TMO[$s]}s?)"; nf=1
  elif [ "$rc" = 0 ] && [ "$np" = 0 ]; then
    verdict FAIL "e2e $s" "ran no check"; nf=1
  fi
  step_done "e2e $s" "$([ "$nf" = 0 ] && echo ok || echo FAIL)" $(( $(date +%s) - t )) "$np passed, $nf failed, $ns skipped"
done

# ------------------------------------------------------------------ summary
say "summary (mode $MODE, server $SERVER, logs in $OUTDIR)"
printf '%s\n' "${STEPS[@]}"
if [ "$F" -gt 0 ]; then echo; echo "failures:"; grep '^FAIL:' "$RESULTS" | sed 's/^/  /' || true; fi
if grep -q '^SKIP:' "$RESULTS"; then echo; echo "skips:"; grep '^SKIP:' "$RESULTS" | sed 's/^/  /'; fi
if [ "${ci:-0}" -gt 0 ]; then echo "  ($ci cargo tests are #[ignore]d; counted as skipped)"; fi
echo
echo "total wall time $(( $(date +%s) - T_START ))s"
echo "$P passed, $F failed, $S skipped"
[ "$F" = 0 ]
