#!/usr/bin/env bash
# conformance-matrix.sh - libiscsi's full conformance suite (iscsi-test-cu ALL, --dataloss) against
# ironlun (embedded default: 1 GiB thin LUN 0) and the peer target tgt (scripts/peer-tgt.sh, LUN 1,
# 1 GiB file, rdwr) in one run on this machine, and writes docs/CONFORMANCE.md: per-family and
# per-suite counts side by side, the failed tests, and the exact command lines.
#
# Usage: scripts/conformance-matrix.sh [DOC]      (DOC default: docs/CONFORMANCE.md)
# Env:   MATRIX_PORT [3330] (ironlun; tgt uses +1), MATRIX_TIMEOUT [1200] s per run, IRONLUN_BIN,
#        MATRIX_OUT [conformance-out/matrix-<UTC time>]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOC=${1:-$REPO/docs/CONFORMANCE.md}
PORT=${MATRIX_PORT:-3330}
TPORT=$((PORT + 1))
TCTL=43
TMO=${MATRIX_TIMEOUT:-1200}
IRONLUN_BIN=${IRONLUN_BIN:-$REPO/build/release/ironlun}
OUT=${MATRIX_OUT:-$REPO/conformance-out/matrix-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
RUN="$REPO/scripts/iscsi-test-cu-run.sh"
log() { printf '[matrix %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
listening() { ss -Htln "( sport = :$1 )" 2>/dev/null | grep -q .; }

IL_PID=
cleanup() {
  set +e
  if [ -n "$IL_PID" ] && kill -0 "$IL_PID" 2>/dev/null; then
    kill -TERM "$IL_PID"
    for _ in $(seq 100); do kill -0 "$IL_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$IL_PID" 2>/dev/null && kill -KILL "$IL_PID"
  fi
  PEER_DIR="$OUT/tgt" CONTROL_PORT=$TCTL "$REPO/scripts/peer-tgt.sh" stop >/dev/null 2>&1
  rm -rf "$OUT/ironlun-data" "$OUT/tgt/lun"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# ---------------------------------------------------------------- ironlun
IL_URL=iscsi://127.0.0.1:$PORT/iqn.2026-11.org.ironlun:default/0
IL_CMD="build/release/ironlun serve --data-dir DIR --iscsi-listen 127.0.0.1:$PORT --allow-sanitize"
il_ok=0
if [ -x "$IRONLUN_BIN" ] && ! listening "$PORT"; then
  nocim=(); if "$IRONLUN_BIN" serve --help 2>/dev/null | grep -q -- '--no-cim'; then nocim=(--no-cim); IL_CMD="$IL_CMD --no-cim"; fi
  "$IRONLUN_BIN" serve ${nocim[@]+"${nocim[@]}"} --data-dir "$OUT/ironlun-data" --iscsi-listen "127.0.0.1:$PORT" --allow-sanitize > "$OUT/ironlun.log" 2>&1 &
  IL_PID=$!
  for _ in $(seq 300); do listening "$PORT" && break; kill -0 "$IL_PID" 2>/dev/null || break; sleep 0.1; done
  if listening "$PORT"; then
    log "ironlun: iscsi-test-cu ALL"
    if TESTS=ALL OUT_DIR="$OUT/ironlun" TIMEOUT="$TMO" "$RUN" "$IL_URL" ironlun > "$OUT/ironlun.summary" 2>/dev/null; then il_ok=1; fi
    kill -0 "$IL_PID" 2>/dev/null || log "WARNING: ironlun died during the run"
  else log "ironlun did not start: $(tail -n 3 "$OUT/ironlun.log" | tr '\n' ' ')"; fi
else log "ironlun not run: no $IRONLUN_BIN or port $PORT busy"; fi

# ---------------------------------------------------------------- ironlun: other LUN configurations
# The tests ALL skips on the default LUN because they need a LUN configured otherwise.
CFG_RUNS=("lbppb 0 ALL.WriteSame10.UnmapUnaligned,ALL.WriteSame10.InvalidDataOutSize,ALL.WriteSame16.UnmapUnaligned,ALL.WriteSame16.InvalidDataOutSize,ALL.CompareAndWrite.InvalidDataOutSize"
  "readonly 1 ALL.ReadOnly" "removable 2 ALL.PreventAllow,ALL.StartStopUnit,ALL.NoMedia")
CFG_IQN=iqn.2026-11.org.ironlun:luncfg
cfg_ok=0
if [ "$il_ok" = 1 ]; then
  cfg_ok=1
  kill -TERM "$IL_PID"; for _ in $(seq 150); do kill -0 "$IL_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$IL_PID" 2>/dev/null && kill -KILL "$IL_PID"
  wait "$IL_PID" 2>/dev/null || true
  "$REPO/scripts/lun-configs.sh" "$CFG_IQN" "$PORT" > "$OUT/luncfg.toml"
  "$IRONLUN_BIN" serve ${nocim[@]+"${nocim[@]}"} --data-dir "$OUT/ironlun-cfg-data" --config "$OUT/luncfg.toml" --allow-sanitize > "$OUT/ironlun-cfg.log" 2>&1 &
  IL_PID=$!
  for _ in $(seq 300); do listening "$PORT" && break; kill -0 "$IL_PID" 2>/dev/null || break; sleep 0.1; done
  for r in "${CFG_RUNS[@]}"; do
    read -r name lun tests <<< "$r"
    log "ironlun $name LUN: $tests"
    TESTS="$tests" OUT_DIR="$OUT/ironlun-$name" TIMEOUT="$TMO" "$RUN" "iscsi://127.0.0.1:$PORT/$CFG_IQN/$lun" "ironlun-$name" > "$OUT/ironlun-$name.summary" 2>/dev/null || cfg_ok=0
  done
fi

# ---------------------------------------------------------------- tgt
TGT_URL=iscsi://127.0.0.1:$TPORT/iqn.2026-11.test:peer/1
PEER_DIR="$OUT/tgt" PORTAL=127.0.0.1:$TPORT CONTROL_PORT=$TCTL FILL=0 "$REPO/scripts/peer-tgt.sh" start > "$OUT/peer-tgt.log" 2>&1
log "tgt: iscsi-test-cu ALL"
tgt_ok=0
if TESTS=ALL OUT_DIR="$OUT/tgt-run" TIMEOUT="$TMO" "$RUN" "$TGT_URL" tgt > "$OUT/tgt.summary" 2>/dev/null; then tgt_ok=1; fi

# ---------------------------------------------------------------- document
counts() {  # counts DIR FAMILY -> "total | passed | failed | skipped"
  if [ ! -s "$1/results.tsv" ]; then echo "- | - | - | -"; return 0; fi
  awk -F'\t' -v f="$2" '$1 == f || f == "ALL" { n++; c[$4]++ } END { printf "%d | %d | %d | %d", n, c["PASS"], c["FAIL"], c["SKIP"] }' "$1/results.tsv"
}
suite_cell() {  # suite_cell DIR SUITE -> "p / f / s"
  if [ ! -s "$1/suites.tsv" ]; then echo "-"; return 0; fi
  awk -F'\t' -v s="$2" '$1 == s { printf "%d / %d / %d", $3, $4, $5; found = 1 } END { if (!found) printf "-" }' "$1/suites.tsv"
}
{
  echo "# Conformance: libiscsi iscsi-test-cu"
  echo
  echo "Generated by \`scripts/conformance-matrix.sh\` on $(date -u +%Y-%m-%d\ %H:%MZ), $(nproc) cores, libiscsi-bin $(dpkg-query -W -f='${Version}' libiscsi-bin 2>/dev/null), tgt $(dpkg-query -W -f='${Version}' tgt 2>/dev/null), ironlun $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')."
  echo "Both targets ran in the same run on the same machine.  Counting rules (skips are CUnit passes that printed"
  echo "[SKIPPED]) are in \`scripts/iscsi-test-cu-run.sh\`."
  echo "\`tests/e2e/conformance.sh\` (part of \`scripts/test.sh\`) requires, for ironlun, zero failures in ALL, no skip"
  echo "but those whose precondition is another LUN configuration, and zero failures and skips in the runs on LUNs"
  echo "configured that way (the last section)."
  echo
  if [ "$il_ok" = 1 ]; then :; else echo "**ironlun: the run did not complete (server missing, not serving, or timed out); its columns are empty or partial.**"; echo; fi
  echo "## Totals"
  echo
  echo "| family | target | total | passed | failed | skipped |"
  echo "| --- | --- | --- | --- | --- | --- |"
  for f in ALL SCSI iSCSI; do
    echo "| $f | ironlun | $(counts "$OUT/ironlun" "$f") |"
    echo "| $f | tgt | $(counts "$OUT/tgt-run" "$f") |"
  done
  echo
  echo "## Per suite (passed / failed / skipped)"
  echo
  echo "| suite | ironlun | tgt |"
  echo "| --- | --- | --- |"
  { cat "$OUT/tgt-run/suites.tsv" 2>/dev/null || true; cat "$OUT/ironlun/suites.tsv" 2>/dev/null || true; } | cut -f1 | awk '!seen[$0]++' | while read -r s; do
    echo "| $s | $(suite_cell "$OUT/ironlun" "$s") | $(suite_cell "$OUT/tgt-run" "$s") |"
  done
  echo
  echo "## Failed tests"
  echo
  for n in ironlun tgt-run; do
    echo "### ${n%-run}"
    echo
    if [ -s "$OUT/$n/results.tsv" ]; then awk -F'\t' '$4 == "FAIL" { printf "- %s.%s %s\n", $2, $3, $6 }' "$OUT/$n/results.tsv"
    else echo "- (no results)"; fi
    echo
  done
  echo "## ironlun on LUNs configured otherwise (passed / failed / skipped)"
  echo
  echo "A second ironlun server with \`luncfg.toml\` (LUN 0: 4096-byte physical blocks; LUN 1: read_only; LUN 2:"
  echo "removable; written out by the script) runs the tests ALL skipped on the default LUN for that reason.  tgt was"
  echo "not configured so."
  echo
  [ "$cfg_ok" = 1 ] || { echo "**These runs did not all complete; see the raw outputs.**"; echo; }
  echo "| LUN | tests | result |"
  echo "| --- | --- | --- |"
  for r in "${CFG_RUNS[@]}"; do
    read -r name lun tests <<< "$r"
    echo "| $lun ($name) | ${tests//,/, } | $(counts "$OUT/ironlun-$name" ALL | awk -F' [|] ' '{print $2 " / " $3 " / " $4}') |"
  done
  echo
  echo "## Command lines"
  echo
  echo '```sh'
  echo "# ironlun (embedded default config)"
  echo "$IL_CMD"
  sed "s|$REPO/||g" "$OUT/ironlun/command.txt" 2>/dev/null || echo "iscsi-test-cu ... $IL_URL"
  echo "# tgt: PORTAL=127.0.0.1:$TPORT scripts/peer-tgt.sh start   (LUN 1, 1 GiB file, bstype rdwr)"
  sed "s|$REPO/||g" "$OUT/tgt-run/command.txt" 2>/dev/null || true
  echo '```'
  echo
  echo "iscsi-test-cu runs with \`-t <list>\` where the list is every ALL.<suite> with CompareAndWrite, then"
  echo "Sanitize.Reservations, moved last (see the"
  echo "header of scripts/iscsi-test-cu-run.sh for why), \`--dataloss --allow-sanitize\`, and the same URL twice (MultipathIO)."
} > "$DOC.tmp"
mv "$DOC.tmp" "$DOC"
log "wrote $DOC (raw outputs in $OUT)"
tail -n 1 "$OUT/ironlun.summary" 2>/dev/null | sed 's/^/ironlun: /' || true
tail -n 1 "$OUT/tgt.summary" | sed 's/^/tgt: /' || true
[ "$il_ok" = 1 ] && [ "$cfg_ok" = 1 ] && [ "$tgt_ok" = 1 ]
