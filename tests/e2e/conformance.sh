#!/usr/bin/env bash
# conformance.sh - libiscsi's conformance suite (iscsi-test-cu --dataloss --allow-sanitize) against ironlun.
#
# 1. ALL (every SCSI and iSCSI suite of this libiscsi) against the default thin LUN, with the same URL
#    twice so the MultipathIO tests run.  Every suite is one check: any failed test fails it, and so
#    does any skipped test, except the skips whose precondition is another LUN configuration
#    (removable medium, write protection, more than one logical block per physical block).  The
#    suites in REQUIRED_SUITES must also have at least one test that passed.
# 2. Those other configurations, on a second server with a config file: a LUN with 4096-byte physical
#    blocks (the tests that need LBPPB > 1), a read-only LUN (ALL.ReadOnly) and a removable one
#    (ALL.PreventAllow, ALL.StartStopUnit, ALL.NoMedia): zero failed and zero skipped.
#
# Env: E2E_PORT [3312], CONFORMANCE_TIMEOUT [1200] (seconds per iscsi-test-cu run), and see lib.sh.
# With E2E_SERVER=tgt (to validate the checks) step 2 is reported as skipped: it needs ironlun's config.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
e2e_init conformance
need iscsi-test-cu
PORT=${E2E_PORT:-3312}
RUN="$REPO/scripts/iscsi-test-cu-run.sh"
# iscsi-test-cu runs with --allow-sanitize; ironlun only accepts SANITIZE when told so
export IRONLUN_EXTRA_ARGS="${IRONLUN_EXTRA_ARGS:---allow-sanitize}"
TMO=${CONFORMANCE_TIMEOUT:-1200}

REQUIRED_SUITES=(iSCSI.iSCSIcmdsn iSCSI.iSCSIdatasn iSCSI.iSCSIResiduals iSCSI.iSCSITMF
  SCSI.TestUnitReady SCSI.Inquiry SCSI.ReadCapacity10 SCSI.ReadCapacity16
  SCSI.Read6 SCSI.Read10 SCSI.Read12 SCSI.Read16 SCSI.Write10 SCSI.Write12 SCSI.Write16
  SCSI.Verify10 SCSI.Verify12 SCSI.Verify16 SCSI.ModeSense6 SCSI.ReportSupportedOpcodes
  SCSI.Mandatory SCSI.WriteVerify10 SCSI.WriteVerify12 SCSI.WriteVerify16
  SCSI.Unmap SCSI.WriteSame10 SCSI.WriteSame16 SCSI.GetLBAStatus
  SCSI.OrWrite SCSI.Prefetch10 SCSI.Prefetch16 SCSI.WriteAtomic16
  SCSI.ReadDefectData10 SCSI.ReadDefectData12 SCSI.Reserve6
  SCSI.PrinReadKeys SCSI.PrinServiceactionRange SCSI.PrinReportCapabilities
  SCSI.ProutRegister SCSI.ProutReserve SCSI.ProutClear SCSI.ProutPreempt
  SCSI.ExtendedCopy SCSI.ReceiveCopyResults
  SCSI.Sanitize SCSI.MultipathIO SCSI.CompareAndWrite)
# CompareAndWrite stays last: libiscsi 1.19's InvalidDataOutSize test leaves a
# PDU-rewriting hook behind when it fails (see scripts/iscsi-test-cu-run.sh).
# every suite of the iSCSI family that this libiscsi knows must be in the list above
while read -r s; do
  printf '%s\n' "${REQUIRED_SUITES[@]}" | grep -qx "$s" || REQUIRED_SUITES+=("$s")
done < <(timeout 30 iscsi-test-cu --list | grep -E '^iSCSI\.[^.]+$' || true)

# Skips allowed in step 1: the test needs a LUN configured otherwise, and step 2 runs it on one.
OTHER_CONFIG_SKIP='Logical unit is not removable|Logical unit is not write-protected|Media is not removable|LBPPB < 2'

# suite_checks DIR LABEL ALLOWED_SKIP_REGEX [MUST_PASS_SUITE...]: one check per suite that ran.
suite_checks() {
  local dir="$1" label="$2" allowed="$3"; shift 3
  local suite total p f sk failed_tests bad_skips
  while IFS=$'\t' read -r suite total p f sk; do
    failed_tests=$(awk -F'\t' -v s="$suite" '$2 == s && $4 == "FAIL" {printf "%s ", $3}' "$dir/results.tsv")
    bad_skips=$(awk -F'\t' -v s="$suite" -v ok="$allowed" \
      '$2 == s && $4 == "SKIP" && (ok == "" || $6 !~ ok) {printf "%s (%s) ", $3, $6}' "$dir/results.tsv")
    if [ "$f" != 0 ]; then fail "iscsi-test-cu $label $suite" "$f failed ($failed_tests), $p passed, $sk skipped of $total"
    elif [ -n "$bad_skips" ]; then fail "iscsi-test-cu $label $suite" "skipped without a configuration reason: $bad_skips"
    else pass "iscsi-test-cu $label $suite" "$p passed, $sk skipped (other LUN configuration) of $total"; fi
  done < "$dir/suites.tsv"
  local s row
  for s in "$@"; do
    row=$(awk -F'\t' -v s="${s#*.}" '$1 == s && $3 > 0' "$dir/suites.tsv")
    [ -n "$row" ] || fail "iscsi-test-cu $label $s has a passing test" "no test of this suite passed"
  done
}

# skipped_for REGEX [EXTRA...]: the ALL.<suite>.<test> list (comma-separated) of the tests step 1
# skipped with a reason matching REGEX, plus EXTRA.
skipped_for() {
  local re="$1"; shift
  { printf '%s\n' "$@"
    awk -F'\t' -v re="$re" '$4 == "SKIP" && $6 ~ re {print "ALL." $2 "." $3}' "$OUT/all/results.tsv" 2>/dev/null; } |
    awk -F. 'NF && !seen[$0]++ && !whole[$1 "." $2] {print} NF == 2 {whole[$0] = 1}' | paste -sd, -
}

# run_suite NAME URL TESTS : runs iscsi-test-cu through the counting runner into $OUT/NAME.
run_suite() {
  local name="$1" url="$2" tests="$3" rc=0
  log "$name: $tests against $url"
  TESTS="$tests" OUT_DIR="$OUT/$name" TIMEOUT="$TMO" "$RUN" "$url" "$E2E_SERVER-$name" > "$OUT/$name.summary" 2> "$OUT/$name.stderr" || rc=$?
  cat "$OUT/$name.summary" >&2
  if [ "$rc" != 0 ] || [ ! -s "$OUT/$name/suites.tsv" ]; then
    fail "iscsi-test-cu $name ran to completion" "runner rc=$rc (3 = timeout after ${TMO}s or no parsable output), see $OUT/$name"
    return 1
  fi
  kill -0 "$SRV_PID" 2>/dev/null || { fail "server alive after $name" "see $OUT/ironlun*.log"; return 1; }
}

# ---- 1. ALL on the default LUN
server_start_default "$PORT" 32 || { e2e_finish; exit 1; }
if run_suite all "$URL" ALL; then
  suite_checks "$OUT/all" ALL "$OTHER_CONFIG_SKIP" "${REQUIRED_SUITES[@]}"
  { echo "# iscsi-test-cu ALL against $E2E_SERVER ($URL), $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "# command: $(cat "$OUT/all/command.txt" 2>/dev/null)"
    grep -E '^(family|total|passed)' "$OUT/all.summary" || true
    echo "# per suite: suite total passed failed skipped"
    cat "$OUT/all/suites.tsv"; } > "$OUT/ALL-counts.txt"
  echo "INFO: conformance: ALL: $(tail -n 1 "$OUT/all.summary") (counts in $OUT/ALL-counts.txt)"
fi
server_stop_one 0

# ---- 2. the other LUN configurations
if [ "$E2E_SERVER" != ironlun ]; then
  skip "iscsi-test-cu on read-only, removable and 4K-physical LUNs" "needs an ironlun config file (E2E_SERVER=$E2E_SERVER)"
  e2e_finish; exit $?
fi
CIQN=iqn.2026-11.org.ironlun:luncfg
"$REPO/scripts/lun-configs.sh" "$CIQN" "$PORT" > "$WORK/luncfg.toml"
if IRONLUN_DATA="$WORK/luncfg-data" ironlun_start "$PORT" "$WORK/luncfg.toml"; then
  CFG_URL=iscsi://127.0.0.1:$PORT/$CIQN
  # Every test step 1 skipped for a configuration reason runs here, on the LUN configured so
  # (plus the whole suites that exist for those configurations).
  LBPPB_TESTS=$(skipped_for 'LBPPB < 2')
  RO_TESTS=$(skipped_for 'not write-protected' ALL.ReadOnly)
  RM_TESTS=$(skipped_for 'not removable' ALL.PreventAllow ALL.StartStopUnit ALL.NoMedia)
  if [ -n "$LBPPB_TESTS" ]; then
    run_suite lbppb "$CFG_URL/0" "$LBPPB_TESTS" && suite_checks "$OUT/lbppb" "4K-physical LUN" ""
  fi
  run_suite readonly "$CFG_URL/1" "$RO_TESTS" && suite_checks "$OUT/readonly" "read-only LUN" "" ReadOnly
  run_suite removable "$CFG_URL/2" "$RM_TESTS" && suite_checks "$OUT/removable" "removable LUN" "" PreventAllow StartStopUnit NoMedia
  # ...and each of them did run there.
  missing=$(awk -F'\t' -v ok="$OTHER_CONFIG_SKIP" '$4 == "SKIP" && $6 ~ ok {print $2 "\t" $3}' "$OUT/all/results.tsv" 2>/dev/null |
    while IFS=$'\t' read -r suite test; do
      cat "$OUT"/lbppb/results.tsv "$OUT"/readonly/results.tsv "$OUT"/removable/results.tsv 2>/dev/null |
        awk -F'\t' -v s="$suite" -v t="$test" '$2 == s && $3 == t {found = 1} END {exit !found}' || printf '%s.%s ' "$suite" "$test"
    done)
  if [ -n "$missing" ]; then fail "every configuration-skipped test ran on its LUN" "not run: $missing"
  else pass "every configuration-skipped test ran on its LUN"; fi
fi
e2e_finish
