#!/usr/bin/env bash
# replication.sh - what a mirror costs an initiator, over iSCSI: fio's libiscsi engine (built by
# scripts/fio-libiscsi.sh) runs 4k random writes at QD1 and QD32 against two same-size LUNs of one
# `ironlun serve`: LUN 0 with no mirror, LUN 1 whose volume has a mirror (made through CIM-XML with
# wbemcli, its target in a second pool file in the same directory). First the mirror is synchronous,
# then it is switched to asynchronous (ModifyReplicaSynchronization Reset To Async). Each repetition
# runs every job on both LUNs, the order alternating between repetitions; the table shows medians.
# The engine-level figures (async lag, resync time vs dirty fraction) come from
# `cargo bench -p ironlun-replication --bench replication`.
#
# Usage: benches/replication.sh
# Env:   BENCH_RUNTIME [10] s per job, BENCH_REPS [3], BENCH_SIZE [256M] per LUN,
#        BENCH_PORT [3490], BENCH_CIM_PORT [6001], BENCH_OUT [bench-out/replication-<UTC time>],
#        IRONLUN_BIN [build/release/ironlun], FIO (a fio with the libiscsi engine; built into
#        bench-out/fio-libiscsi when absent)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNTIME=${BENCH_RUNTIME:-10}
REPS=${BENCH_REPS:-3}
SIZE=${BENCH_SIZE:-256M}
PORT=${BENCH_PORT:-3490}
CIM_PORT=${BENCH_CIM_PORT:-6001}
IRONLUN_BIN=${IRONLUN_BIN:-$REPO/build/release/ironlun}
OUT=${BENCH_OUT:-$REPO/bench-out/replication-$(date -u +%Y%m%dT%H%M%SZ)}
IQN=iqn.2026-11.org.ironlun:bench-repl
NS=root/cimv2/storage/iscsitarget
for v in RUNTIME REPS PORT CIM_PORT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "replication.sh: $v must be a whole number, not '${!v}'" >&2; exit 2; }
done
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
command -v wbemcli >/dev/null || die "wbemcli missing (scripts/install-test-deps.sh)"
[ -x "$IRONLUN_BIN" ] || die "no $IRONLUN_BIN (cargo build --release)"

FIO=${FIO:-$REPO/bench-out/fio-libiscsi/fio}
if ! "$FIO" --enghelp 2>/dev/null | grep -qw libiscsi; then
  log "building fio with the libiscsi engine (scripts/fio-libiscsi.sh)"
  FIO=$(timeout 900 "$REPO/scripts/fio-libiscsi.sh" "$REPO/bench-out/fio-libiscsi" 2>"$OUT/fio-build.log" | tail -n 1) ||
    die "cannot build fio ($OUT/fio-build.log)"
fi

IL_PID=
cleanup() {
  set +e
  if [ -n "$IL_PID" ] && kill -0 "$IL_PID" 2>/dev/null; then
    kill -TERM "$IL_PID"
    for _ in $(seq 100); do kill -0 "$IL_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$IL_PID" 2>/dev/null && kill -KILL "$IL_PID"
    wait "$IL_PID" 2>/dev/null
  fi
}
trap cleanup EXIT

DATA="$OUT/data"; rm -rf "$DATA"; mkdir -p "$DATA"
cat > "$OUT/config.toml" <<TOML
[[pool]]
name = "default"
path = "pool.img"
size = "4G"
[[pool]]
name = "mirror"
path = "mirror.img"
size = "4G"
[[target]]
iqn = "$IQN"
portals = ["127.0.0.1:$PORT"]
[[target.lun]]
id = 0
size = "$SIZE"
volume = "plain"
[[target.lun]]
id = 1
size = "$SIZE"
volume = "msrc"
TOML
"$IRONLUN_BIN" serve --data-dir "$DATA" --config "$OUT/config.toml" \
  --cim-listen "127.0.0.1:$CIM_PORT" > "$OUT/ironlun.log" 2>&1 &
IL_PID=$!
for _ in $(seq 300); do
  ss -Htln "( sport = :$PORT )" 2>/dev/null | grep -q . && break
  kill -0 "$IL_PID" 2>/dev/null || die "ironlun exited: $(tail -n 5 "$OUT/ironlun.log")"
  sleep 0.1
done
cred=$(cat "$DATA/cim-admin.credential"); pw=${cred#*:}
host=$(cat /proc/sys/kernel/hostname 2>/dev/null || echo ironlun)
BASE="http://admin:$pw@127.0.0.1:$CIM_PORT/$NS"
SVC="$BASE:MSISCSITARGET_ReplicationService.SystemCreationClassName=\"CIM_ComputerSystem\",SystemName=\"$host\",CreationClassName=\"MSISCSITARGET_ReplicationService\",Name=\"ReplicationService\""
cim() {  # cim METHOD.PARAMS EXPECTED-RETURN
  local o; o=$(timeout 120 wbemcli cm "$SVC" "$1" 2>&1) || true
  echo "$o" >> "$OUT/cim.log"
  grep -q "${1%%.*}: $2" <<< "$o" || die "CIM ${1%%.*}: $(cut -c1-300 <<< "$o")"
}

url() { local u="127.0.0.1:$PORT/$IQN/$1"; echo "iscsi\\://${u//:/\\:}"; }
for lun in 0 1; do
  log "prefill LUN $lun: sequential 1 MiB writes over the whole LUN"
  timeout 900 "$FIO" --name=prefill --ioengine=libiscsi --filename="$(url "$lun")" --rw=write --bs=1M \
    --iodepth=16 --size=100% > "$OUT/prefill-$lun.log" 2>&1 || die "prefill of LUN $lun failed"
done

log "synchronous mirror of LUN 1 (volume msrc) into pool 'mirror', waited for until Synchronized"
t0=$(date +%s.%N)
cim "CreateElementReplica.ElementName=\"mdst\",SyncType=6,Mode=2,WaitForCopyState=4,SourceElement=MSISCSITARGET_StorageVolume.DeviceID=\"default/msrc\",TargetPool=MSISCSITARGET_StoragePool.InstanceID=\"IRONLUN:pool-mirror\"" 0
INITIAL_SYNC=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
SYNC="Synchronization=MSISCSITARGET_StorageSynchronized.SystemElement=MSISCSITARGET_StorageVolume.DeviceID=\"default/msrc\",SyncedElement=MSISCSITARGET_StorageVolume.DeviceID=\"mirror/mdst\""

RESULTS="$OUT/results.tsv"; : > "$RESULTS"
run_job() {  # MODE LUN QD REP
  local mode=$1 lun=$2 qd=$3 rep=$4 j="$OUT/fio-$1-lun$2-qd$3-rep$4.json"
  timeout $((RUNTIME * 3 + 60)) "$FIO" --name=job --ioengine=libiscsi --filename="$(url "$lun")" \
    --rw=randwrite --bs=4k --iodepth="$qd" --time_based --runtime="$RUNTIME" --ramp_time=1 \
    --output-format=json --output="$j" > /dev/null 2>&1 || die "fio $mode LUN $lun QD$qd failed"
  python3 - "$j" "$mode" "$lun" "$qd" "$rep" >> "$RESULTS" <<'PY'
import json, sys
j, mode, lun, qd, rep = sys.argv[1:]
w = json.load(open(j))["jobs"][0]["write"]
p = w["clat_ns"].get("percentile", {})
print("\t".join([mode, lun, qd, rep, "%.0f" % w["iops"],
                 "%.1f" % (p.get("50.000000", 0) / 1e3), "%.1f" % (p.get("99.000000", 0) / 1e3)]))
PY
}
measure() {  # MODE
  local rep qd lun order
  for rep in $(seq "$REPS"); do
    if [ $((rep % 2)) = 1 ]; then order="0 1"; else order="1 0"; fi
    for qd in 1 32; do
      for lun in $order; do
        log "$1 mirror: rep $rep, LUN $lun, 4k randwrite QD$qd"
        run_job "$1" "$lun" "$qd" "$rep"
      done
    done
  done
}
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
measure sync
cim "ModifyReplicaSynchronization.Operation=18,$SYNC" 0
measure async
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
cim "ModifyReplicaSynchronization.Operation=12,$SYNC" 0   # Fracture: the run leaves no flow behind

{
  echo "Measured $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(uname -r); LUNs of $SIZE, pools on $(df --output=source "$DATA" | tail -n 1);"
  echo "load average $LOAD_BEFORE before, $LOAD_AFTER after; $REPS repetitions of ${RUNTIME} s per job; initial sync of the mirror ${INITIAL_SYNC} s."
  echo
  echo "| mirror of LUN 1 | QD | LUN 0 (no mirror) IOPS | LUN 1 IOPS | LUN 1 / LUN 0 | LUN 0 clat p50 us | LUN 1 clat p50 us | LUN 0 clat p99 us | LUN 1 clat p99 us |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
def med(mode, lun, qd, col):
    v = [float(r[col]) for r in rows if r[0] == mode and r[1] == lun and r[2] == qd]
    return statistics.median(v) if v else float("nan")
for mode, label in (("sync", "synchronous"), ("async", "asynchronous")):
    for qd in ("1", "32"):
        a, b = med(mode, "0", qd, 4), med(mode, "1", qd, 4)
        print("| %s | %s | %.0f | %.0f | %.2f | %.1f | %.1f | %.1f | %.1f |" % (
            label, qd, a, b, b / a, med(mode, "0", qd, 5), med(mode, "1", qd, 5),
            med(mode, "0", qd, 6), med(mode, "1", qd, 6)))
PY
} | tee "$OUT/report.md"
log "report: $OUT/report.md"
