#!/usr/bin/env bash
# The cow extent store vs qcow2 internal snapshots, side by side on the
# same disk in the same run (docs/BENCHMARKS.md, "cow store vs qcow2").
#
#   benches/cow-vs-qcow2.sh [DIR]
#
# DIR (default bench-out/cow-vs-qcow2) holds the pool and image files
# (sparse; removed at the end) and results.txt, one key=value line per
# figure, "cow ..." from cow/examples/cow_figures.rs and "qcow2 ..." from
# qemu-img / qemu-io. Knobs (environment):
#   SIZES="1G 32G 1T"   snapshot-create volume sizes (maps fully populated)
#   COW_SNAPS=1000      ironlun snapshots timed per size and mode
#   QCOW_SNAPS="1G:10 32G:5 1T:3"  qcow2 snapshots timed per size
#   SERIES=10000        ironlun snapshots of one volume (1st vs last)
#   QCOW_SERIES=1000    qcow2 snapshots of one image (1st vs last; also the
#                       snapshot count of the qcow2 read test)
#   ROUNDS=5 COUNT=4096 rounds and 4 KiB I/Os per round, IOPS tests
#   READ_SNAPS=1000     snapshots in the read test
#   SECTIONS="snapshot series write read delete snapdelete"  which parts to run
#   DELETE_SIZES="32G 1T"  volume delete sizes (cow only; qcow2 has no
#                       equivalent of deleting one volume inside an image)
#   SNAPDELETE_SIZES="32G 256G"  snapshot delete sizes (cow only)
# Needs qemu-img and qemu-io (QEMU) and about 3 GB free for the 1 TiB case
# (metadata only: extents are mapped without writing their data).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${1:-bench-out/cow-vs-qcow2}
SIZES=${SIZES:-"1G 32G 1T"}
COW_SNAPS=${COW_SNAPS:-1000}
QCOW_SNAPS=${QCOW_SNAPS:-"1G:10 32G:5 1T:3"}
SERIES=${SERIES:-10000}
QCOW_SERIES=${QCOW_SERIES:-1000}
ROUNDS=${ROUNDS:-5}
COUNT=${COUNT:-4096}
READ_SNAPS=${READ_SNAPS:-1000}
SECTIONS=${SECTIONS:-"snapshot series write read delete snapdelete"}
DELETE_SIZES=${DELETE_SIZES:-"32G 1T"}
SNAPDELETE_SIZES=${SNAPDELETE_SIZES:-"32G 256G"}
mkdir -p "$DIR"
OUT=$DIR/results.txt
: >"$OUT"

command -v qemu-img >/dev/null && command -v qemu-io >/dev/null || {
	echo "cow-vs-qcow2: needs qemu-img and qemu-io" >&2
	exit 1
}
cargo build -q -p ironlun-cow --release --example cow_figures
# .cargo/config.toml sends build output to build/ (target/ is a source crate here)
FIG=${CARGO_TARGET_DIR:-build}/release/examples/cow_figures

say() { echo "$*" | tee -a "$OUT"; }
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
load() { say "# $1: load average $(cut -d' ' -f1-3 /proc/loadavg) at $(date -u +%TZ)"; }
now_us() { echo $(($(date +%s%N) / 1000)); }
# Median / p99 / max of numbers on stdin (one a line).
stats() { sort -n | awk '{v[NR]=$1} END {p=int(NR*0.99+0.999); if (p<1) p=1;
	printf "n=%d median_us=%s p99_us=%s max_us=%s", NR, v[int((NR+1)/2)], v[p], v[NR]}'; }
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
# IOPS of one `qemu-img bench` run (its own timer, excluding open/close).
qbench() { qemu-img bench "$@" | awk -v n="$COUNT" '/Run completed/ {printf "%.0f", n/$4}'; }

say "# $(date -u +%FT%TZ) $(uname -r) $(qemu-img --version | head -1)"
say "# disk: $(df -h "$DIR" | tail -1)"

# 1. Snapshot create on fully mapped volumes.
want snapshot && load snapshot
want snapshot && for size in $SIZES; do
	"$FIG" snapshot-create "$DIR" "$size" "$COW_SNAPS" | tee -a "$OUT"
	img=$DIR/snap-$size.qcow2
	rm -f "$img"
	# preallocation=metadata maps every cluster (L2 entries, refcounts)
	# without writing data: qcow2's equivalent of a fully populated map.
	qemu-img create -q -f qcow2 -o cluster_size=65536,preallocation=metadata "$img" "$size"
	say "qcow2 metadata size=$size allocated_bytes=$(du -B1 "$img" | cut -f1)"
	n=1
	for pair in $QCOW_SNAPS; do [ "${pair%%:*}" = "$size" ] && n=${pair#*:}; done
	base=()
	for i in $(seq 1 "$n"); do
		t0=$(now_us)
		qemu-img info "$img" >/dev/null
		t1=$(now_us)
		qemu-img snapshot -c "s$i" "$img"
		t2=$(now_us)
		base+=($((t1 - t0)))
		echo $((t2 - t1))
	done >"$DIR/q.times"
	say "qcow2 snapshot_create size=$size $(stats <"$DIR/q.times") (whole qemu-img snapshot -c process; qemu-img info on the same image takes ${base[0]:-?} us)"
	rm -f "$img" "$DIR/q.times"
done

# 2. The 1st vs the Nth snapshot of one volume.
if want series; then
	load series
	"$FIG" snapshot-series "$DIR" "$SERIES" | tee -a "$OUT"
fi

# 3. 4 KiB writes: overwrite vs first write after a snapshot. Both stores
# once with O_DIRECT (cow: IRONLUN_COW_IO=direct; qcow2: -t none) and once
# through the page cache (cow: its default; qcow2: -t writeback).
if want write; then
load write
for io in direct default; do
	for pattern in random stride; do
		if [ "$io" = direct ]; then
			IRONLUN_COW_IO=direct "$FIG" write "$DIR" "$ROUNDS" "$COUNT" "$pattern"
		else
			env -u IRONLUN_COW_IO "$FIG" write "$DIR" "$ROUNDS" "$COUNT" "$pattern"
		fi | tee -a "$OUT"
	done
done
img=$DIR/write.qcow2
for cache in none writeback; do
	rm -f "$img"
	qemu-img create -q -f qcow2 -o cluster_size=65536 "$img" 1G
	qemu-io -f qcow2 -t none -c "write -P 0xa5 0 1G" "$img" >/dev/null
	plain=() after=()
	for r in $(seq 1 "$ROUNDS"); do
		off=$(((r % 16) * 4096))
		plain+=("$(qbench -f qcow2 -w -t "$cache" -d 1 -c "$COUNT" -s 4096 -S 69632 -o "$off" "$img")")
		qemu-img snapshot -c w "$img"
		after+=("$(qbench -f qcow2 -w -t "$cache" -d 1 -c "$COUNT" -s 4096 -S 69632 -o "$((off + 8192))" "$img")")
		qemu-img snapshot -d w "$img"
	done
	p=$(printf '%s\n' "${plain[@]}" | median)
	a=$(printf '%s\n' "${after[@]}" | median)
	say "qcow2 write_4k cache=$cache pattern=stride rounds=$ROUNDS count=$COUNT overwrite_iops=$p after_snapshot_iops=$a ratio=$(awk -v a="$a" -v p="$p" 'BEGIN{printf "%.3f", a/p}')"
done
rm -f "$img"
fi

# 4. 4 KiB reads with 0 vs READ_SNAPS snapshots (and qcow2's 1st vs Nth
# snapshot on the way: 16 random 4 KiB writes between snapshots, as cow's).
if want read; then
load read
IRONLUN_COW_IO=direct "$FIG" read "$DIR" "$ROUNDS" "$COUNT" "$READ_SNAPS" | tee -a "$OUT"
env -u IRONLUN_COW_IO "$FIG" read "$DIR" "$ROUNDS" "$COUNT" "$READ_SNAPS" | tee -a "$OUT"
img0=$DIR/read0.qcow2 img1=$DIR/read1.qcow2
for img in "$img0" "$img1"; do
	rm -f "$img"
	qemu-img create -q -f qcow2 -o cluster_size=65536 "$img" 1G
	qemu-io -f qcow2 -t none -c "write -P 0xa5 0 1G" "$img" >/dev/null
done
qn=$((QCOW_SERIES > READ_SNAPS ? QCOW_SERIES : READ_SNAPS))
for i in $(seq 1 "$qn"); do
	t0=$(now_us)
	qemu-img snapshot -c "r$i" "$img1"
	echo $(($(now_us) - t0)) >>"$DIR/q.series"
	cmds=()
	for _ in $(seq 16); do cmds+=(-c "write -P 0x77 $(((RANDOM * 32768 + RANDOM) % 262144 * 4096)) 4k"); done
	qemu-io -f qcow2 -t none "${cmds[@]}" "$img1" >/dev/null
done
k=$((qn / 100 > 0 ? qn / 100 : 1))
say "qcow2 snapshot_series count=$qn first_us=$(head -1 "$DIR/q.series") last_us=$(tail -1 "$DIR/q.series") first$k: $(head -"$k" "$DIR/q.series" | stats) last$k: $(tail -"$k" "$DIR/q.series" | stats) (whole qemu-img process each)"
rm -f "$DIR/q.series"
for cache in none writeback; do
	none=() many=()
	for r in $(seq 1 "$ROUNDS"); do
		off=$(((r % 16) * 4096))
		none+=("$(qbench -f qcow2 -t "$cache" -d 1 -c "$COUNT" -s 4096 -S 69632 -o "$off" "$img0")")
		many+=("$(qbench -f qcow2 -t "$cache" -d 1 -c "$COUNT" -s 4096 -S 69632 -o "$off" "$img1")")
	done
	a=$(printf '%s\n' "${none[@]}" | median)
	b=$(printf '%s\n' "${many[@]}" | median)
	say "qcow2 read_4k cache=$cache pattern=stride rounds=$ROUNDS count=$COUNT snapshots=0 iops=$a snapshots=$qn iops=$b ratio=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.3f", b/a}')"
done
rm -f "$img0" "$img1"
fi

# 5. Volume delete of a fully mapped volume while another is being read.
if want delete; then
	load delete
	for size in $DELETE_SIZES; do
		"$FIG" delete "$DIR" "$size" | tee -a "$OUT"
	done
fi
# 6. Snapshot delete of a snapshot whose whole volume was rewritten, while
#    another volume is read and written; "all" frees inside the call (as
#    before batched snapshot deletes), "steps" is the default.
if want snapdelete; then
	load snapdelete
	for size in $SNAPDELETE_SIZES; do
		for batch in all steps; do
			"$FIG" snapshot-delete "$DIR" "$size" "$batch" | tee -a "$OUT"
		done
	done
fi
load end
echo "results in $OUT"
