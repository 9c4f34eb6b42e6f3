#!/usr/bin/env bash
# iscsi-test-cu-run.sh - run the libiscsi conformance suite (iscsi-test-cu) against
# one iSCSI LUN and summarise the result.
#
# Usage:
#   iscsi-test-cu-run.sh iscsi://127.0.0.1:3260/<target-iqn>/<lun> [label]
#
# Prints, as its last line:
#   passed N failed N skipped N
# (plus per-family lines and the list of failed tests above it).
#
# The LUN is overwritten (the suite runs with --dataloss). Use a scratch LUN.
#
# Environment (all optional):
#   OUT_DIR       where raw output goes     [./conformance-out/<label>-<UTC time>]
#   TESTS         iscsi-test-cu -t pattern  [ALL]   (ALL == SCSI + iSCSI families;
#                 comma-separated lists and FAMILY.SUITE.TEST globs work)
#   MPATH_URL     second URL for the MultipathIO tests [same as the first URL];
#                 set to "none" to run single-path (MultipathIO tests then skip)
#   DATALOSS      1 = pass --dataloss (write tests run) [1]
#   SANITIZE      1 = pass --allow-sanitize             [1]
#   XML           1 = also run once more in CUnit XML mode (-x), keeping
#                 CUnitAutomated-{Listing,Results}.xml in OUT_DIR [0]
#   INITIATOR1/2  initiator names [libiscsi defaults]
#   TIMEOUT       seconds before the run is killed [1800]
#   ISCSI_TEST_CU path of the binary [iscsi-test-cu]
#   PARSE_ONLY    path of an existing verbose run.txt: skip the run, only parse it
#   CAW_LAST      1 = when TESTS is a whole family, run the CompareAndWrite suite
#                 last (via a test-list file) [1].  Reason: in libiscsi 1.19
#                 CompareAndWrite.InvalidDataOutSize installs a PDU-mangling hook
#                 (rewrites CDB byte 13 of every later SCSI command) and never
#                 removes it when the target lacks COMPARE AND WRITE, so every
#                 later 16-byte-CDB test in the same process fails spuriously.
#                 It only bites on thin-provisioned LUs (LBPME=1) without CAW.
#                 Sanitize.Reservations is moved after it, last of all: when a
#                 second (multipath) URL is given, libiscsi 1.19 takes its
#                 RESERVE6 on that long-lived second session and never releases
#                 it, so every later test that touches the medium from the first
#                 session meets RESERVATION CONFLICT, as SPC-2 requires (the
#                 SANITIZE of Sanitize.Reset, which follows it in --list order,
#                 first of all).
#
# Counting rules (iscsi-test-cu reports a skip as a CUnit *pass* with a
# "[SKIPPED]" message, so CUnit's own "Passed" figure includes skips):
#   failed  = CUnit verdict FAILED
#   skipped = CUnit verdict passed, and the test printed "[SKIPPED]"
#   passed  = CUnit verdict passed, no "[SKIPPED]"
# A test whose CUnit verdict is "passed" but which printed "[FAILED]" is listed
# separately as "soft" (informational, counted as passed).
#
# Also writes $OUT_DIR/suites.tsv: suite  total  passed  failed  skipped  (one line per suite).
# Exit status: 0 when the run completed (whatever the verdicts), 3 when iscsi-test-cu timed out or
# produced no parsable test, 2 on usage errors.  Callers judge the verdicts from the files.
set -euo pipefail

URL=${1:?usage: $0 iscsi://HOST:PORT/IQN/LUN [label]}
LABEL=${2:-run}
TESTS=${TESTS:-ALL}
MPATH_URL=${MPATH_URL:-$URL}
DATALOSS=${DATALOSS:-1}
SANITIZE=${SANITIZE:-1}
XML=${XML:-0}
TIMEOUT=${TIMEOUT:-1800}
ISCSI_TEST_CU=${ISCSI_TEST_CU:-iscsi-test-cu}
OUT_DIR=${OUT_DIR:-./conformance-out/${LABEL}-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT_DIR"

CAW_LAST=${CAW_LAST:-1}
testsel=$TESTS
if [ "$CAW_LAST" = 1 ] && [[ "$TESTS" =~ ^(ALL|SCSI|LINUX)$ ]]; then
  # The test-list file keeps the suites in --list order, CompareAndWrite moved last.
  "$ISCSI_TEST_CU" --list | grep -E "^${TESTS}\.[^.]+\$" > "$OUT_DIR/tests.all"
  # Sanitize.Reservations runs last of all (its suite's other tests stay in place).
  { while read -r suite; do
      case "$suite" in
        "${TESTS}.CompareAndWrite") ;;
        "${TESTS}.Sanitize") "$ISCSI_TEST_CU" --list | grep -E "^${TESTS}\.Sanitize\.[^.]+\$" | grep -v '\.Reservations$' || true ;;
        *) echo "$suite" ;;
      esac
    done < "$OUT_DIR/tests.all"
    grep "^${TESTS}\.CompareAndWrite\$" "$OUT_DIR/tests.all" || true
    grep -q "^${TESTS}\.Sanitize\$" "$OUT_DIR/tests.all" && echo "${TESTS}.Sanitize.Reservations"; } > "$OUT_DIR/tests.list"
  testsel=$OUT_DIR/tests.list
fi
args=(-t "$testsel")
if [ "$DATALOSS" = 1 ]; then args+=(--dataloss); fi
if [ "$SANITIZE" = 1 ]; then args+=(--allow-sanitize); fi
if [ -n "${INITIATOR1:-}" ]; then args+=(-i "$INITIATOR1"); fi
if [ -n "${INITIATOR2:-}" ]; then args+=(-I "$INITIATOR2"); fi
urls=("$URL")
if [ "$MPATH_URL" != none ]; then urls+=("$MPATH_URL"); fi

cmd=("$ISCSI_TEST_CU" "${args[@]}" "${urls[@]}")
printf '%q ' "${cmd[@]}" > "$OUT_DIR/command.txt"; echo >> "$OUT_DIR/command.txt"
dpkg-query -W -f='${Package} ${Version}\n' libiscsi-bin > "$OUT_DIR/versions.txt" 2>/dev/null || true

if [ -n "${PARSE_ONLY:-}" ]; then
  [ "$PARSE_ONLY" -ef "$OUT_DIR/run.txt" ] || cp "$PARSE_ONLY" "$OUT_DIR/run.txt"
  rc=na; wall=na; XML=0
  [ ! -f "$OUT_DIR/rc.txt" ] || eval "$(grep -E '^rc=[0-9a-z]+ wall_s=[0-9.a-z]+$' "$OUT_DIR/rc.txt" | sed 's/wall_s=/wall=/')"
else
  t0=$(date +%s.%N)
  rc=0
  timeout -k 10 "$TIMEOUT" "${cmd[@]}" < /dev/null > "$OUT_DIR/run.txt" 2> "$OUT_DIR/run.stderr" || rc=$?
  t1=$(date +%s.%N)
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
  echo "rc=$rc wall_s=$wall" > "$OUT_DIR/rc.txt"
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then echo "WARNING: iscsi-test-cu timed out after ${TIMEOUT}s" >&2; fi
fi

# ---- parse the verbose CUnit output into one line per test ----------------
# results.tsv columns: family  suite  test  verdict(PASS|FAIL|SKIP)  soft(0|1)  first-message
# family: TESTS itself when it is one family name, else SCSI/iSCSI by suite
# name (the ALL family is exactly the union of the SCSI and iSCSI families).
awk '
function flush() {
  if (test == "") return
  v = (verdict == "FAILED") ? "FAIL" : (verdict == "passed" ? (skip ? "SKIP" : "PASS") : "UNKNOWN")
  fam = (fam0 ~ /^(SCSI|iSCSI|LINUX)$/) ? fam0 : ((suite ~ /^iSCSI/) ? "iSCSI" : "SCSI")
  msg = (v == "SKIP") ? smsg : (fmsg != "" ? fmsg : smsg)
  gsub(/\t/, " ", msg)
  printf "%s\t%s\t%s\t%s\t%d\t%s\n", fam, suite, test, v, soft, msg
  test = ""
}
function scan(s,   t, pre) {
  if (verdict != "") return   # text after the verdict belongs to suite set-up/teardown
  pre = s
  t = s; sub(/^[ \t]+/, "", t)
  if (t ~ /^(passed|FAILED)([ \t]|$)/) { verdict = substr(t, 1, 6); pre = "" }
  else if (match(s, /\.\.\.(passed|FAILED)([ \t]|$)/)) { verdict = substr(s, RSTART + 3, 6); pre = substr(s, 1, RSTART - 1) }
  if (index(pre, "[SKIPPED]")) skip = 1
  if (index(pre, "[FAILED]"))  soft = 1
  if (fmsg == "" && match(pre, /\[FAILED\][^\[]*/))  { fmsg = substr(pre, RSTART, RLENGTH); sub(/[ \t]+$/, "", fmsg) }
  if (smsg == "" && match(pre, /\[SKIPPED\][^\[]*/)) { smsg = substr(pre, RSTART, RLENGTH); sub(/[ \t]+$/, "", smsg) }
}
/^Suite: /            { flush(); suite = $2; next }
/^Run Summary:/       { flush(); done = 1; next }
done                  { next }
/^  Test: /           { flush(); line = $0; sub(/^  Test: /, "", line)
                        test = line; sub(/ \.\.\..*$/, "", test)
                        verdict = ""; skip = 0; soft = 0; fmsg = ""; smsg = ""
                        rest = $0; sub(/^  Test: [^ ]* /, "", rest); scan(rest); next }
test != ""            { scan($0) }
END                   { flush() }
' fam0="$TESTS" "$OUT_DIR/run.txt" > "$OUT_DIR/results.tsv"
# Messages printed after a test's verdict (e.g. "...passed    [FAILED] PRIN
# command: ... UNIT_ATTENTION" from the next suite's login) are ignored.

# ---- summary ---------------------------------------------------------------
{
  echo "# iscsi-test-cu conformance: $LABEL"
  echo "# url: $URL   mpath: $MPATH_URL   tests: $TESTS   rc: $rc   wall_s: $wall"
  awk -F'\t' '{ n[$1]++; c[$1" "$4]++; N++; C[$4]++ }
    END {
      for (f in n) printf "family %-5s total %3d passed %3d failed %3d skipped %3d\n", f, n[f], c[f" PASS"]+0, c[f" FAIL"]+0, c[f" SKIP"]+0
      if (C["UNKNOWN"]) printf "unparsed %d\n", C["UNKNOWN"]
      printf "total %d\n", N
    }' "$OUT_DIR/results.tsv" | sort
  grep -A4 '^Run Summary' "$OUT_DIR/run.txt" | sed 's/^/cunit: /' || true
  echo "failed tests:"
  awk -F'\t' '$4=="FAIL"{printf "  FAIL %s.%s.%s  %s\n", $1, $2, $3, $6}' "$OUT_DIR/results.tsv"
  echo "soft failures (CUnit passed, [FAILED] printed):"
  awk -F'\t' '$4!="FAIL" && $5==1 {printf "  soft %s.%s.%s\n", $1, $2, $3}' "$OUT_DIR/results.tsv"
  echo "skip reasons:"
  awk -F'\t' '$4=="SKIP"{print $6}' "$OUT_DIR/results.tsv" | sort | uniq -c | sort -rn | sed 's/^/  /'
  awk -F'\t' '{C[$4]++} END{printf "passed %d failed %d skipped %d\n", C["PASS"]+0, C["FAIL"]+0, C["SKIP"]+0}' "$OUT_DIR/results.tsv"
} > "$OUT_DIR/summary.txt"

if [ "$XML" = 1 ]; then
  ( cd "$OUT_DIR" && timeout "$TIMEOUT" "${cmd[@]}" -x > run-xml.txt 2>&1 ) || true
fi

awk -F'\t' '{ if (!($2 in n)) o[++k] = $2; n[$2]++; c[$2" "$4]++ }
  END { for (i = 1; i <= k; i++) { s = o[i]; printf "%s\t%d\t%d\t%d\t%d\n", s, n[s], c[s" PASS"]+0, c[s" FAIL"]+0, c[s" SKIP"]+0 } }' \
  "$OUT_DIR/results.tsv" > "$OUT_DIR/suites.tsv"

cat "$OUT_DIR/summary.txt"
echo "raw output: $OUT_DIR" >&2
if [ "$rc" = 124 ] || [ "$rc" = 137 ] || [ ! -s "$OUT_DIR/results.tsv" ]; then exit 3; fi
exit 0
