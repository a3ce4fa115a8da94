#!/usr/bin/env bash
# blockdev.sh compares a thinpool device with the two references the block
# device targets are set against, in one run on one machine, with the same
# fio jobs:
#
#   plain   loop device (--direct-io=on) over a plain sparse 4 GiB file: the
#           physical limit of a loop device on this file system;
#   thin    a fresh pool and a 4 GiB thin device, attached with
#           'thinctl device attach' (FUSE file + loop device, direct I/O on);
#   qcow2   a 4 GiB qcow2 image with 64 KiB clusters exported by
#           qemu-storage-daemon --export type=fuse onto a regular file, with a
#           loop device (--direct-io=on) on that file;
#   qcow2buf the same qcow2 export with the loop device's direct I/O off.
#           qemu-storage-daemon 7.2's FUSE export stores the wrong data when
#           writes to it overlap in time (loop direct I/O at queue depth > 1:
#           see the data check), so 'qcow2' measures a path that corrupts
#           data and cannot carry ext4; 'qcow2buf' is the qcow2 reference
#           that keeps data intact.
#
# All live in one work directory (--dir, default /tmp), so on the same file
# system. Each run sets every target up afresh, all at once, and runs each
# workload on every target in turn (the order rotates from run to run), so
# that the numbers compared were taken within a minute or two of each other
# on a machine whose load drifts. With fio (libaio, direct=1) on the raw
# loop device, over its first --region bytes:
#
#   raw-seqwrite-first  1 MiB sequential writes, QD16, writing the fresh
#                       region exactly once (provisioning); this is also the
#                       prefill, so everything after reads real data
#   raw-seqwrite        1 MiB sequential writes, QD16, overwrite, time based
#   raw-seqread         1 MiB sequential reads, QD16, time based
#   raw-randwrite       4 KiB random writes, QD16, overwrite, time based
#   raw-randread        4 KiB random reads, QD16, time based
#
# then checks the data (fio verify=crc32c, 1 MiB sequential and 4 KiB random
# writes at QD16 over 64 MiB, read back and compared), then makes ext4 on
# the loop device, mounts it and measures, on a file of
# --region bytes:
#
#   ext4-seqwrite-first 1 MiB sequential writes, QD16, into the new file, once
#   ext4-seqwrite       the same, overwrite, time based
#   ext4-seqread        1 MiB sequential reads, QD16, time based
#
# Writes end with an fsync (end_fsync=1), which fio counts in the job's time.
# Each measurement is repeated --runs times; the report gives the median and
# the min-max, and the ratios thin/plain and thin/qcow2 of the medians. It
# also records the CPU time of the serving process (thinpool daemon,
# qemu-storage-daemon) per GiB moved, and how idle the machine was: the
# FUSE targets need CPU where the plain loop device needs almost none, so
# on a busy machine they fall behind more.
#
#   bench/blockdev.sh                       # 3 runs of 10 s: about 18 minutes
#   bench/blockdev.sh --runtime 5           # about 13 minutes
#   bench/blockdev.sh --runs 1 --runtime 3  # a quick look
#   bench/blockdev.sh --perf /tmp/prof      # also perf-record the serving processes
#
# Output: bench/results/blockdev.md (tables, machine, exact commands) and
# bench/results/blockdev.json (every measurement and the summary); --out DIR
# writes them elsewhere. Needs root, fio, jq, qemu-img, qemu-storage-daemon,
# e2fsprogs, util-linux and Go (to build bin/thinctl; --thinctl skips that).
#
# Everything it sets up (mounts, loop devices, qemu-storage-daemon, the pool
# daemon, the work directory) is torn down on exit, on failure and on Ctrl-C,
# and every step runs under a timeout.
set -uo pipefail

usage() {
	sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	cat <<'EOF'
Options:
  --runs N        repetitions of every measurement (3)
  --runtime S     seconds of each time-based fio job (10)
  --ramp S        fio ramp_time of time-based jobs, not measured (2)
  --region SIZE   region of the device / size of the ext4 file (1G)
  --size SIZE     size of each device (4G)
  --dir DIR       where the work directory is made (/tmp)
  --out DIR       where the results go (bench/results)
  --targets LIST  comma-separated subset of plain,thin,qcow2,qcow2buf
  --no-ext4       skip the ext4 part
  --thinctl PATH  use this thinctl instead of building bin/thinctl
  --perf DIR      perf-record (cpu-clock, call graphs) the thinpool daemon and
                  qemu-storage-daemon during each of their fio jobs, into DIR
  --keep          keep the work directory (everything is still unmounted)
EOF
}

RUNS=3 RUNTIME=10 RAMP=2 REGION=1G SIZE=4G BASEDIR=/tmp OUT= TARGETS=plain,thin,qcow2,qcow2buf
EXT4=1 THINCTL= PERFDIR= KEEP=0
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift ;;
	--runtime) RUNTIME=$2; shift ;;
	--ramp) RAMP=$2; shift ;;
	--region) REGION=$2; shift ;;
	--size) SIZE=$2; shift ;;
	--dir) BASEDIR=$2; shift ;;
	--out) OUT=$2; shift ;;
	--targets) TARGETS=$2; shift ;;
	--no-ext4) EXT4=0 ;;
	--thinctl) THINCTL=$2; shift ;;
	--perf) PERFDIR=$2; shift ;;
	--keep) KEEP=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "blockdev.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$REPO/bench/results}

# fd 3 and 4 are the script's stderr and stdout: a signal trap runs inside
# whatever function was running, with that function's redirections.
exec 3>&2 4>&1
log() { printf '%s %s\n' "$(date +%T)" "$*" >&3; }
die() { log "FATAL: $*"; exit 1; }

# --- preconditions ---------------------------------------------------------
[ "$(id -u)" = 0 ] || die "needs root (loop devices, FUSE, mount)"
for c in fio jq qemu-img qemu-storage-daemon mkfs.ext4 losetup timeout findmnt; do
	command -v "$c" >/dev/null || die "missing $c"
done
case $RUNS$RUNTIME$RAMP in *[!0-9]*) die "--runs, --runtime and --ramp take integers" ;; esac
[ "$RUNS" -ge 1 ] && [ "$RUNTIME" -ge 1 ] || die "--runs and --runtime must be at least 1"
IFS=, read -r -a TLIST <<<"$TARGETS"
for t in "${TLIST[@]}"; do
	case $t in plain | thin | qcow2 | qcow2buf) ;; *) die "unknown target $t" ;; esac
done

# --- state for cleanup -----------------------------------------------------
WORK=                # the work directory; everything we make is under it
CHILD=               # the process 'run' waits for
PERFPID=             # a background perf record
declare -a MOUNTS=() # ext4 mounts (directories)
declare -a LOOPS=()  # loop devices we attached with losetup
declare -a QSDS=()   # qemu-storage-daemon pids
declare -a POOLS=()  # pools whose daemon we may have started
CLEANED=0

# run SECONDS CMD...: runs CMD under a timeout, in the background so that a
# signal interrupts the wait at once and the trap can kill it.
run() {
	local t=$1 rc=0
	shift
	timeout -k 10 "$t" "$@" 3>&- 4>&- &
	CHILD=$!
	wait "$CHILD" || rc=$?
	CHILD=
	return "$rc"
}

# under DIR: mount points and loop devices whose path is inside DIR.
mounts_under() { awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r; }
# loops_under reads sysfs, not losetup -l / -j: those query every loop device
# with LOOP_GET_STATUS, which stats its backing file and so hangs on a loop
# device over a FUSE file whose server hangs (another user's, say).
loops_under() {
	local f
	for f in /sys/block/loop*/loop/backing_file; do
		[ -r "$f" ] || continue
		case $(cat "$f" 2>/dev/null) in "$1"/*) f=${f#/sys/block/}; echo "/dev/${f%%/*}" ;; esac
	done
}

# drop ARRAY VALUE: removes VALUE from the array named ARRAY.
drop() {
	local -n arr=$1
	local e out=()
	for e in "${arr[@]}"; do [ "$e" = "$2" ] || out+=("$e"); done
	arr=("${out[@]}")
}

# safe_rm DIR: removes DIR unless something is still mounted under it.
safe_rm() {
	[ -z "$(mounts_under "$1")" ] || die "$1 still has mounts: $(mounts_under "$1" | tr '\n' ' ')"
	rm -rf "$1"
}

stop_pid() { # stop_pid PID SECONDS: SIGTERM, then SIGKILL after SECONDS
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	log "cleanup: pid $pid ignored SIGTERM: SIGKILL"
	kill -KILL "$pid" 2>/dev/null
	sleep 0.5
}

thin_daemon_pid() { # thin_daemon_pid POOL
	local f
	f=$(find "$WORK/run" -maxdepth 2 -name pid 2>/dev/null | head -1)
	[ -n "$f" ] && cat "$f" 2>/dev/null
}

cleanup() {
	local rc=$? m l p
	[ "$CLEANED" = 1 ] && return
	CLEANED=1
	trap '' INT TERM HUP
	exec 1>&4 2>&3
	[ -n "$CHILD" ] && stop_pid "$CHILD" 10
	[ -n "$PERFPID" ] && stop_pid "$PERFPID" 5
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		for m in "${MOUNTS[@]}"; do
			if mountpoint -q "$m"; then
				timeout -k 5 60 umount "$m" || timeout -k 5 30 umount -l "$m" || log "cleanup: cannot unmount $m"
			fi
		done
		for l in "${LOOPS[@]}"; do
			timeout -k 5 30 losetup -d "$l" 2>/dev/null
		done
		for p in "${POOLS[@]}"; do
			if [ -e "$p" ]; then
				THINPOOL_RUNDIR=$WORK/run timeout -k 5 60 "$THINCTL" -q --pool "$p" daemon stop >/dev/null 2>&1 ||
					log "cleanup: thinctl daemon stop failed for $p"
			fi
		done
		p=$(thin_daemon_pid) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null && stop_pid "$p" 10
		for p in "${QSDS[@]}"; do stop_pid "$p" 10; done
		# Whatever is still there under the work directory: ext4 mounts,
		# loop devices, FUSE mounts (deepest first).
		for m in $(mounts_under "$WORK"); do
			timeout -k 5 30 umount "$m" 2>/dev/null || timeout -k 5 30 umount -l "$m" || log "cleanup: cannot unmount $m"
		done
		for l in $(loops_under "$WORK"); do
			timeout -k 5 30 losetup -d "$l" || log "cleanup: cannot detach $l"
		done
		for m in $(mounts_under "$WORK"); do
			timeout -k 5 30 umount -l "$m" || log "cleanup: cannot unmount $m"
		done
		if [ "$KEEP" = 1 ]; then
			log "kept $WORK"
		elif [ -z "$(mounts_under "$WORK")" ]; then
			rm -rf "$WORK"
		else
			log "cleanup: $WORK still has mounts; not removed"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM HUP

# --- build -----------------------------------------------------------------
if [ -z "$THINCTL" ]; then
	log "make build"
	run 600 make -C "$REPO" -s build >&2 || die "make build failed"
	THINCTL=$REPO/bin/thinctl
fi
[ -x "$THINCTL" ] || die "no thinctl at $THINCTL"

WORK=$(mktemp -d "$BASEDIR/blockdev-bench.XXXXXX") || die "mktemp in $BASEDIR"
export THINPOOL_RUNDIR=$WORK/run # never another daemon's run directory
mkdir -p "$WORK/fio" "$WORK/run" "$OUT" || die "mkdir"
[ -n "$PERFDIR" ] && { mkdir -p "$PERFDIR" || die "mkdir $PERFDIR"; }
JSONL=$WORK/results.jsonl
: >"$JSONL"
log "work directory $WORK ($(findmnt -n -o FSTYPE -T "$WORK"))"

# --- targets ---------------------------------------------------------------
# setup_T sets TDEV[T] (the loop device) and TPID[T] (the serving process,
# if any), and SETUP_CMDS[T] (the commands, for the report); teardown_T
# undoes it. Both die on failure: cleanup then undoes the rest. Each target
# lives in $WORK/T.
declare -A SETUP_CMDS TDEV TPID DIO

setup_plain() {
	local f=$WORK/plain/disk.img
	mkdir -p "$WORK/plain"
	run 30 truncate -s "$SIZE" "$f" || die "truncate $f"
	run 30 losetup --direct-io=on -f --show "$f" >"$WORK/out" || die "losetup $f"
	TDEV[plain]=$(cat "$WORK/out")
	LOOPS+=("${TDEV[plain]}")
	TPID[plain]=
	SETUP_CMDS[plain]="truncate -s $SIZE disk.img
losetup --direct-io=on -f --show disk.img"
}
teardown_plain() {
	run 30 losetup -d "${TDEV[plain]}" || die "losetup -d ${TDEV[plain]}"
	drop LOOPS "${TDEV[plain]}"
	safe_rm "$WORK/plain"
}

POOL=
setup_thin() {
	POOL=$WORK/thin/pool.img
	mkdir -p "$WORK/thin"
	POOLS+=("$POOL")
	run 60 "$THINCTL" -q --pool "$POOL" pool create --size 20G >&2 || die "pool create"
	run 60 "$THINCTL" -q --pool "$POOL" device create d --size "$SIZE" >&2 || die "device create"
	run 60 "$THINCTL" --pool "$POOL" device attach d >"$WORK/out" || die "device attach"
	TDEV[thin]=$(tail -1 "$WORK/out")
	[ -b "${TDEV[thin]}" ] || die "device attach printed '${TDEV[thin]}', not a block device"
	TPID[thin]=$(thin_daemon_pid)
	SETUP_CMDS[thin]="thinctl --pool pool.img pool create --size 20G
thinctl --pool pool.img device create d --size $SIZE
thinctl --pool pool.img device attach d   # FUSE file + loop device, direct I/O on"
}
teardown_thin() {
	run 60 "$THINCTL" -q --pool "$POOL" device detach d >&2 || die "device detach"
	run 90 "$THINCTL" -q --pool "$POOL" daemon stop >&2 || die "daemon stop"
	drop POOLS "$POOL"
	safe_rm "$WORK/thin"
	safe_rm "$WORK/run"
	mkdir -p "$WORK/run"
}

setup_qcow2() { qcow2_up qcow2 on; }
setup_qcow2buf() { qcow2_up qcow2buf off; }
teardown_qcow2() { qcow2_down qcow2; }
teardown_qcow2buf() { qcow2_down qcow2buf; }

qcow2_up() { # qcow2_up TARGET on|off
	local t=$1 dir=$WORK/$1 i qsd
	local img=$dir/disk.qcow2 file=$dir/export
	mkdir -p "$dir"
	run 60 qemu-img create -q -f qcow2 -o cluster_size=65536 "$img" "$SIZE" >&2 || die "qemu-img create"
	: >"$file"
	qemu-storage-daemon \
		--blockdev driver=file,node-name=f0,filename="$img" \
		--blockdev driver=qcow2,node-name=q0,file=f0 \
		--export type=fuse,id=e0,node-name=q0,mountpoint="$file",writable=on \
		>"$dir/qsd.log" 2>&1 3>&- 4>&- &
	qsd=$!
	QSDS+=("$qsd")
	TPID[$t]=$qsd
	for ((i = 0; i < 200; i++)); do
		findmnt -n "$file" >/dev/null 2>&1 && break
		kill -0 "$qsd" 2>/dev/null || die "qemu-storage-daemon exited: $(cat "$dir/qsd.log")"
		sleep 0.1
	done
	findmnt -n "$file" >/dev/null 2>&1 || die "qemu-storage-daemon did not mount its FUSE export in 20s"
	run 30 losetup --direct-io="$2" -f --show "$file" >"$WORK/out" || die "losetup $file"
	TDEV[$t]=$(cat "$WORK/out")
	LOOPS+=("${TDEV[$t]}")
	SETUP_CMDS[$t]="qemu-img create -f qcow2 -o cluster_size=65536 disk.qcow2 $SIZE
touch export
qemu-storage-daemon --blockdev driver=file,node-name=f0,filename=disk.qcow2 --blockdev driver=qcow2,node-name=q0,file=f0 --export type=fuse,id=e0,node-name=q0,mountpoint=export,writable=on &
losetup --direct-io=$2 -f --show export"
}
qcow2_down() { # qcow2_down TARGET
	local t=$1 i
	run 30 losetup -d "${TDEV[$t]}" || die "losetup -d ${TDEV[$t]}"
	drop LOOPS "${TDEV[$t]}"
	# The loop device lets go of the file asynchronously.
	for ((i = 0; i < 50; i++)); do
		[ -e "/sys/block/${TDEV[$t]#/dev/}/loop" ] || break
		sleep 0.1
	done
	stop_pid "${TPID[$t]}" 20
	wait "${TPID[$t]}" 2>/dev/null
	drop QSDS "${TPID[$t]}"
	safe_rm "$WORK/$t"
}

# --- fio -------------------------------------------------------------------
declare -A FIO_TEMPLATE # workload -> fio command line with FILENAME for the target

# fio_args WORKLOAD FILENAME: prints the fio arguments, one per line.
fio_args() {
	local wl=$1 f=$2
	local common=(--ioengine=libaio --direct=1 --iodepth=16 --numjobs=1 --size="$REGION" --offset=0)
	local timed=(--time_based --runtime="$RUNTIME" --ramp_time="$RAMP")
	local args=(--name="$wl" --filename="$f")
	case $wl in
	raw-seqwrite-first | ext4-seqwrite-first) args+=(--rw=write --bs=1M "${common[@]}" --end_fsync=1) ;;
	raw-seqwrite | ext4-seqwrite) args+=(--rw=write --bs=1M "${common[@]}" "${timed[@]}" --end_fsync=1) ;;
	raw-seqread | ext4-seqread) args+=(--rw=read --bs=1M "${common[@]}" "${timed[@]}") ;;
	raw-randwrite) args+=(--rw=randwrite --bs=4k "${common[@]}" "${timed[@]}" --norandommap --randrepeat=0 --end_fsync=1) ;;
	raw-randread) args+=(--rw=randread --bs=4k "${common[@]}" "${timed[@]}" --norandommap --randrepeat=0) ;;
	*) die "unknown workload $wl" ;;
	esac
	printf '%s\n' "${args[@]}" --output-format=json
}

# cpu_ticks PID: user+system clock ticks of PID so far (0 without a PID).
cpu_ticks() {
	[ -n "$1" ] && awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
# idle_ticks: idle+iowait clock ticks of the machine, and the total.
idle_ticks() { awk '/^cpu / { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }

# measure TARGET RUN WORKLOAD FILENAME: runs fio and appends a record to
# the results, with the CPU time of the target's serving process (thinpool
# daemon, qemu-storage-daemon) and how idle the machine was meanwhile. A
# failed fio job is recorded as null and does not stop the run.
measure() {
	local t=$1 r=$2 wl=$3 f=$4 out dir rc=0 secs pid=${TPID[$1]:-}
	local -a args
	mapfile -t args < <(fio_args "$wl" "$f")
	FIO_TEMPLATE[$wl]="fio $(printf '%s ' "${args[@]}" | sed "s|--filename=$f|--filename=FILENAME|; s/ $//")"
	out=$WORK/fio/$t-$wl-$r.json
	case $wl in *write*) dir=write ;; *) dir=read ;; esac
	case $wl in *first*) secs=600 ;; *) secs=$((RUNTIME + RAMP + 180)) ;; esac
	if [ -n "$PERFDIR" ] && [ -n "$pid" ]; then
		perf record -q -e cpu-clock -F 999 -g -p "$pid" -o "$PERFDIR/$t-$wl-r$r.data" >/dev/null 2>&1 3>&- 4>&- &
		PERFPID=$!
	fi
	local t0 t1 c0 c1 i0 i1
	t0=$(date +%s.%N) c0=$(cpu_ticks "$pid") i0=$(idle_ticks)
	run "$secs" fio "${args[@]}" --output="$out" >/dev/null 2>"$out.err" || rc=$?
	t1=$(date +%s.%N) c1=$(cpu_ticks "$pid") i1=$(idle_ticks)
	if [ -n "$PERFPID" ]; then
		kill -INT "$PERFPID" 2>/dev/null
		wait "$PERFPID" 2>/dev/null
		PERFPID=
	fi
	local extra
	extra=$(awk -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v hz="$HZ" -v i0="$i0" -v i1="$i1" -v pid="$pid" 'BEGIN {
		split(i0, a, " "); split(i1, b, " ")
		idle = (b[2] > a[2]) ? 100 * (b[1] - a[1]) / (b[2] - a[2]) : 0
		printf "{\"wall_s\": %.3f, \"server_cpu_s\": %s, \"machine_idle_pct\": %.1f}", t1 - t0, pid == "" ? "null" : sprintf("%.2f", (c1 - c0) / hz), idle }')
	local rec
	if [ "$rc" = 0 ] && rec=$(sed -n '/^{/,$p' "$out" | jq -c --arg t "$t" --arg wl "$wl" --argjson r "$r" --arg d "$dir" \
		--arg cmd "fio ${args[*]}" --argjson extra "$extra" --arg load "$(cut -d' ' -f1 /proc/loadavg)" '
		.jobs[0] as $j | $j[$d] as $x |
		{target: $t, workload: $wl, run: $r, dir: $d, cmd: $cmd,
		 unit: (if ($wl | test("rand")) then "IOPS" else "MiB/s" end),
		 value: (if ($wl | test("rand")) then $x.iops else $x.bw_bytes / 1048576 end),
		 bw_bytes: $x.bw_bytes, iops: $x.iops, io_bytes: $x.io_bytes, runtime_ms: $x.runtime,
		 clat_mean_us: ($x.clat_ns.mean / 1000), clat_p99_us: (($x.clat_ns.percentile["99.000000"] // 0) / 1000),
		 fio_error: $j.error, loadavg1: ($load | tonumber)} + $extra
		| .server_cpu_s_per_gib = (if .server_cpu_s == null or .io_bytes == 0 then null else .server_cpu_s / (.io_bytes / 1073741824) end)' 2>/dev/null); then
		echo "$rec" >>"$JSONL"
		log "  $(jq -r '"\(.target) \(.workload) run \(.run): \(.value | . * 10 | round / 10) \(.unit) (\(.wall_s | round) s, machine idle \(.machine_idle_pct)%\(if .server_cpu_s then ", server CPU \(.server_cpu_s) s" else "" end))"' <<<"$rec")"
	else
		log "  $t $wl run $r: FAILED (rc $rc): $(tail -3 "$out.err" | tr '\n' ' ')"
		jq -nc --arg t "$t" --arg wl "$wl" --argjson r "$r" --argjson rc "$rc" \
			'{target: $t, workload: $wl, run: $r, value: null, failed: true, rc: $rc}' >>"$JSONL"
	fi
}

# note TARGET RUN WORKLOAD UNIT VALUE: records a measurement taken without fio.
note() {
	jq -nc --arg t "$1" --argjson r "$2" --arg wl "$3" --arg u "$4" --argjson v "$5" \
		'{target: $t, workload: $wl, run: $r, unit: $u, value: $v}' >>"$JSONL"
}

# verify_data TARGET RUN DEV: writes 64 MiB at QD16 (1 MiB sequential, then
# 4 KiB random) with fio's crc32c verification, reads it back and compares.
# Records verify-seq and verify-rand: 1 when every block read back intact.
verify_data() {
	local t=$1 r=$2 dev=$3 kind out rc ok
	local -a args
	for kind in seq rand; do
		args=(--name="verify-$kind" --filename="$dev" --ioengine=libaio --direct=1 --iodepth=16
			--size=64M --offset=0 --verify=crc32c --do_verify=1 --verify_fatal=0 --verify_dump=0)
		case $kind in
		seq) args+=(--rw=write --bs=1M) ;;
		rand) args+=(--rw=randwrite --bs=4k --randrepeat=0) ;;
		esac
		FIO_TEMPLATE[verify-$kind]="fio $(printf '%s ' "${args[@]}" | sed "s|--filename=$dev|--filename=FILENAME|; s/ $//")"
		out=$WORK/fio/$t-verify-$kind-$r.txt
		rc=0
		run 300 fio "${args[@]}" >"$out" 2>&1 || rc=$?
		ok=0
		[ "$rc" = 0 ] && grep -q 'err= 0' "$out" && ok=1
		note "$t" "$r" "verify-$kind" ok "$ok"
		if [ "$ok" = 1 ]; then
			log "  $t verify-$kind run $r: data intact"
		else
			log "  $t verify-$kind run $r: DATA MISMATCH (rc $rc): $(grep -m1 -E 'verify:|err=' "$out")"
		fi
	done
}

# make_ext4 TARGET RUN: mkfs.ext4, e2fsck -n and mount; prints nothing and
# fails when the target cannot carry a file system.
make_ext4() {
	local t=$1 r=$2 dev=${TDEV[$1]} mnt=$WORK/mnt-$1 t0
	mkdir -p "$mnt"
	t0=$(date +%s.%N)
	if ! run 300 mkfs.ext4 -F -q -E lazy_itable_init=0,lazy_journal_init=0 "$dev" >&2; then
		log "  $t: mkfs.ext4 failed"
		return 1
	fi
	note "$t" "$r" ext4-mkfs s "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')"
	# A device that loses writes makes a broken file system: check.
	if ! run 120 e2fsck -fn "$dev" >"$WORK/fsck.out" 2>&1; then
		log "  $t: the new file system is broken: $(grep -v '^e2fsck' "$WORK/fsck.out" | head -2 | tr '\n' ' ')"
		return 1
	fi
	run 60 mount -t ext4 "$dev" "$mnt" || { log "  $t: mount failed"; return 1; }
	MOUNTS+=("$mnt")
}

RAW_WL=(raw-seqwrite-first raw-seqwrite raw-seqread raw-randwrite raw-randread)
EXT4_WL=(ext4-seqwrite-first ext4-seqwrite ext4-seqread)
HZ=$(getconf CLK_TCK)

# One run: every target is set up afresh and all are up at once; each
# workload runs on every target in turn (the order rotates from run to run),
# so that the numbers compared were taken within the same minute or two.
bench_run() { # bench_run RUN
	local r=$1 t wl i n=${#TLIST[@]}
	local -a order=() fs=()
	for ((i = 0; i < n; i++)); do order+=("${TLIST[$(((i + r - 1) % n))]}"); done
	log "run $r/$RUNS: targets in the order ${order[*]}"
	for t in "${order[@]}"; do
		"setup_$t"
		DIO[$t]=$(cat "/sys/block/${TDEV[$t]#/dev/}/loop/dio" 2>/dev/null || echo "?")
		log "  $t: ${TDEV[$t]}, loop direct I/O ${DIO[$t]}${TPID[$t]:+, server pid ${TPID[$t]}}"
	done
	for wl in "${RAW_WL[@]}"; do
		for t in "${order[@]}"; do measure "$t" "$r" "$wl" "${TDEV[$t]}"; done
	done
	for t in "${order[@]}"; do verify_data "$t" "$r" "${TDEV[$t]}"; done
	if [ "$EXT4" = 1 ]; then
		for t in "${order[@]}"; do
			if make_ext4 "$t" "$r"; then
				fs+=("$t")
			else
				for wl in "${EXT4_WL[@]}"; do
					jq -nc --arg t "$t" --arg wl "$wl" --argjson r "$r" \
						'{target: $t, workload: $wl, run: $r, unit: "MiB/s", value: null, failed: true, why: "no usable ext4"}' >>"$JSONL"
				done
			fi
		done
		for wl in "${EXT4_WL[@]}"; do
			for t in "${fs[@]}"; do measure "$t" "$r" "$wl" "$WORK/mnt-$t/fio.dat"; done
		done
		for t in "${fs[@]}"; do
			run 120 umount "$WORK/mnt-$t" || die "umount $WORK/mnt-$t"
			drop MOUNTS "$WORK/mnt-$t"
		done
	fi
	log "run $r/$RUNS: tear down"
	for t in "${order[@]}"; do "teardown_$t"; done
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date -u +%FT%TZ)
for ((r = 1; r <= RUNS; r++)); do bench_run "$r"; done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ----------------------------------------------------------------
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
machine=$(jq -n --arg kernel "$(uname -r)" --arg cpu "$cpu" --argjson cores "$(nproc)" \
	--arg mem "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)" \
	--arg fs "$(findmnt -n -o FSTYPE -T "$WORK") on $(findmnt -n -o SOURCE -T "$WORK")" \
	--arg workdir "$WORK" --arg load0 "$LOAD0" --arg load1 "$LOAD1" --arg started "$START" --arg finished "$(date -u +%FT%TZ)" \
	--arg fio "$(fio --version)" --arg qemu "$(qemu-storage-daemon --version | head -1)" \
	--arg thinctl "$("$THINCTL" version 2>/dev/null | head -1)" \
	--arg commit "$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)" \
	'{kernel: $kernel, cpu: $cpu, cores: $cores, memory: $mem, workdir_fs: $fs, workdir: $workdir,
	  loadavg_start: $load0, loadavg_end: $load1, started: $started, finished: $finished,
	  fio: $fio, qemu: $qemu, thinctl: $thinctl, commit: $commit}')
params=$(jq -n --argjson runs "$RUNS" --argjson runtime "$RUNTIME" --argjson ramp "$RAMP" \
	--arg region "$REGION" --arg size "$SIZE" --arg targets "$TARGETS" --argjson ext4 "$EXT4" \
	'{runs: $runs, runtime_s: $runtime, ramp_s: $ramp, region: $region, device_size: $size,
	  targets: ($targets | split(",")), ext4: ($ext4 == 1)}')
fiocmds=$(for k in "${!FIO_TEMPLATE[@]}"; do jq -n --arg k "$k" --arg v "${FIO_TEMPLATE[$k]}" '{($k): $v}'; done | jq -s 'add // {}')
setup=$(for k in "${!SETUP_CMDS[@]}"; do jq -n --arg k "$k" --arg v "${SETUP_CMDS[$k]}" --arg dio "${DIO[$k]:-?}" \
	'{($k): {commands: ($v | split("\n")), loop_dio: $dio}}'; done | jq -s 'add // {}')

# blockdev.json: every measurement, and per workload and target the median,
# min and max; ratios are thin over each other target, of the medians (for
# times, other over thin), so that > 1 always means thinpool is faster.
jq -s --argjson machine "$machine" --argjson params "$params" --argjson fio "$fiocmds" --argjson setup "$setup" '
	def median: sort | length as $n | if $n == 0 then null elif $n % 2 == 1 then .[($n - 1) / 2] else (.[$n / 2 - 1] + .[$n / 2]) / 2 end;
	def stats: map(select(.value != null)) as $ok |
		{unit: ([.[].unit // empty][0]), n: ($ok | length), failed: (length - ($ok | length)),
		 median: ($ok | map(.value) | median), min: ($ok | map(.value) | min), max: ($ok | map(.value) | max),
		 values: map(.value), why: ([.[].why // empty][0]),
		 server_cpu_s_per_gib: ([$ok[].server_cpu_s_per_gib // empty] | median),
		 machine_idle_pct: ([$ok[].machine_idle_pct // empty] | median)};
	def ratio($w; $a; $b): if ($w[$a].median // 0) == 0 or ($w[$b].median // 0) == 0 or $w[$a].unit == "ok" then null
		elif $w[$a].unit == "s" then $w[$b].median / $w[$a].median else $w[$a].median / $w[$b].median end;
	. as $all |
	($all | group_by(.workload) | map({key: .[0].workload,
		value: (group_by(.target) | map({key: .[0].target, value: stats}) | from_entries)}) | from_entries) as $s |
	# paired: the ratio within each run (targets measured a minute apart),
	# min and max over the runs: how much the machine moved the ratio.
	def paired($rs; $b): [$rs[] | select(.target == "thin") as $x | $rs[] | select(.target == $b and .run == $x.run) |
		if .unit == "s" then .value / $x.value else $x.value / .value end] |
		if length == 0 then null else {min: min, max: max, n: length} end;
	($s | to_entries | map(.key as $wl | .value as $w |
		($all | map(select(.workload == $wl and .value != null and .value != 0 and .unit != "ok"))) as $rs |
		{key: $wl, value: {targets: $w,
		 ratios: {thin_plain: ratio($w; "thin"; "plain"), thin_qcow2: ratio($w; "thin"; "qcow2"),
		          thin_qcow2buf: ratio($w; "thin"; "qcow2buf")},
		 paired_ratios: {thin_plain: paired($rs; "plain"), thin_qcow2: paired($rs; "qcow2"),
		          thin_qcow2buf: paired($rs; "qcow2buf")}}}) | from_entries) as $sum |
	{machine: $machine, params: $params, setup: $setup, fio_commands: $fio, summary: $sum,
	 target_check: [("ext4-seqwrite", "ext4-seqread") as $w | select($sum[$w] != null) | $sum[$w].ratios as $r |
		{workload: $w, thin_plain: $r.thin_plain, thin_plain_ok: (($r.thin_plain // 0) >= 0.7),
		 thin_qcow2: $r.thin_qcow2, thin_qcow2_ok: (if $r.thin_qcow2 == null then null else $r.thin_qcow2 >= 1.0 end),
		 thin_qcow2buf: $r.thin_qcow2buf, thin_qcow2buf_ok: (if $r.thin_qcow2buf == null then null else $r.thin_qcow2buf >= 1.0 end)}],
	 results: $all}' "$JSONL" >"$OUT/blockdev.json" || die "writing $OUT/blockdev.json"

# blockdev.md, from the JSON.
jq -r '
	def f: if . == null then "–" elif . >= 100000 then "\(. / 1000 | round)k" elif . >= 10000 then "\(. / 100 | round / 10)k"
		elif . >= 100 then "\(. | round)" elif . >= 10 then "\(. * 10 | round / 10)" else "\(. * 100 | round / 100)" end;
	def cell: if . == null then "–"
		elif .unit == "ok" then (if .min == 1 then "intact (\(.n)/\(.n))" else "**CORRUPT** (\([.values[] | select(. == 0)] | length)/\(.n + .failed) runs)" end)
		elif .median == null then (.why // "failed")
		elif .n == 1 then "\(.median | f)"
		else "\(.median | f) (\(.min | f)–\(.max | f))" + (if .failed > 0 then " [\(.failed) failed]" else "" end) end;
	def r: if . == null then "–" else "\(. * 100 | round / 100)" end;
	def ok: if . == null then "n/a" elif . then "meets" else "misses" end;
	def wlabel: {
		"raw-seqwrite-first": "raw: seq write 1 MiB QD16, first write (fresh device)",
		"raw-seqwrite": "raw: seq write 1 MiB QD16, overwrite",
		"raw-seqread": "raw: seq read 1 MiB QD16",
		"raw-randwrite": "raw: rand write 4 KiB QD16, overwrite (IOPS)",
		"raw-randread": "raw: rand read 4 KiB QD16 (IOPS)",
		"verify-seq": "data check: 1 MiB seq writes QD16, read back",
		"verify-rand": "data check: 4 KiB rand writes QD16, read back",
		"ext4-mkfs": "ext4: mkfs.ext4 time, s (ratio: speed)",
		"ext4-seqwrite-first": "ext4: seq write 1 MiB QD16, new file",
		"ext4-seqwrite": "ext4: seq write 1 MiB QD16, overwrite",
		"ext4-seqread": "ext4: seq read 1 MiB QD16"}[.] // .;
	def tlabel: {"plain": "plain loop (limit)", "thin": "thinpool", "qcow2": "qcow2, loop dio on",
		"qcow2buf": "qcow2, loop dio off"}[.] // .;
	["raw-seqwrite-first", "raw-seqwrite", "raw-seqread", "raw-randwrite", "raw-randread", "verify-seq", "verify-rand",
	 "ext4-mkfs", "ext4-seqwrite-first", "ext4-seqwrite", "ext4-seqread"] as $order |
	. as $d | $d.machine as $m | $d.params as $p |
	(["plain", "thin", "qcow2", "qcow2buf"] | map(select(. as $t | $p.targets | index($t)))) as $ts |
	([["plain", "thin/plain", "thin_plain"], ["qcow2", "thin/qcow2 (dio on)", "thin_qcow2"], ["qcow2buf", "thin/qcow2 (dio off)", "thin_qcow2buf"]]
		| map(select(.[0] as $t | "thin" as $th | ($ts | index($t)) and ($ts | index($th))))) as $rs |
	"# Block devices: thinpool vs a plain loop device vs qcow2",
	"",
	"`bench/blockdev.sh --runs \($p.runs) --runtime \($p.runtime_s)`, \($m.started) – \($m.finished), commit \($m.commit).",
	"",
	"**Machine:** Linux \($m.kernel), \($m.cpu), \($m.cores) cores, \($m.memory) RAM; work directory on \($m.workdir_fs); load average \($m.loadavg_start) at the start, \($m.loadavg_end) at the end; \($m.fio); \($m.qemu).",
	"",
	"Median of \($p.runs) runs (min–max); MiB/s, or IOPS; higher is better. Every target is a loop device over a file in the same work directory. Each run sets all targets up afresh, at once, and runs each workload on every target in turn (the order rotates from run to run), so compared numbers were taken within a minute or two of each other. Ratios are of the medians; in brackets, the lowest and highest ratio within one run.",
	"",
	"Reading it: thinpool and qemu-storage-daemon do buffered I/O on their files, so reads of recently written data come from the host page cache, while the plain loop device (direct I/O) reads the disk every time: FUSE-target reads can beat the \"limit\". Writes end with an fsync, so they pay for the disk, but a time-based overwrite of one region lets the page cache absorb rewrites (only the last version of a block reaches the disk), so FUSE-target overwrite rates are not disk rates either. qemu-storage-daemon 7.2 acknowledges a punch-hole without zeroing (its discard is ignored by default), which makes mkfs on the qcow2 targets fast. With loop direct I/O on, its FUSE export stores wrong data when writes overlap (see the data check): the `qcow2, loop dio on` numbers measure a path that corrupts data, and ext4 made on it is broken.",
	"",
	"| Workload | " + ($ts | map(tlabel) | join(" | ")) + " | " + ($rs | map(.[1]) | join(" | ")) + " |",
	"|---" + ("|---" * (($ts | length) + ($rs | length))) + "|",
	($order[] as $w | select($d.summary[$w] != null) | $d.summary[$w] as $s |
		"| \($w | wlabel) | " + ($ts | map(. as $t | $s.targets[$t] | cell) | join(" | ")) + " | " +
		($rs | map(.[2] as $k | ($s.ratios[$k] | r) +
			($s.paired_ratios[$k] | if . == null or .n < 2 then "" else " (\(.min | r)–\(.max | r))" end)) | join(" | ")) + " |"),
	"",
	(if ($d.target_check | length) > 0 then
		"**Target:** sequential write and read through ext4 on our loop device ≥ 0.7× the same on a loop device over a plain sparse file, and ≥ 1.0× a qcow2 image.",
		"",
		($d.target_check[] | "- \(.workload): thin/plain \(.thin_plain | r) (\(.thin_plain_ok | ok) 0.7); thin/qcow2 with loop dio on \(.thin_qcow2 | r) (\(.thin_qcow2_ok | ok) 1.0); thin/qcow2 with loop dio off \(.thin_qcow2buf | r) (\(.thin_qcow2buf_ok | ok) 1.0)"),
		"" else empty end),
	"Where the CPU goes: CPU seconds of the serving process (thinpool daemon, qemu-storage-daemon) per GiB moved, and how idle the whole machine was during the job (medians). The plain loop device has no serving process: its I/O costs the kernel almost no CPU.",
	"",
	"| Workload | " + ($ts | map(tlabel) | join(" | ")) + " |",
	"|---" + ("|---" * ($ts | length)) + "|",
	($order[] as $w | select($d.summary[$w] != null and ($w | test("^(raw|ext4)-seq|^raw-rand"))) | $d.summary[$w] as $s |
		"| \($w | wlabel) | " + ($ts | map(. as $t | $s.targets[$t] |
			if . == null or .median == null then "–" else
			(if .server_cpu_s_per_gib == null then "–" else "\(.server_cpu_s_per_gib * 100 | round / 100) s/GiB" end) + ", idle \(.machine_idle_pct | round)%" end) | join(" | ")) + " |"),
	"",
	"## How it was measured",
	"",
	"- Devices of \($p.device_size). fio on the first \($p.region) of the raw loop device, then on a \($p.region) file in ext4 (`mkfs.ext4 -F -q -E lazy_itable_init=0,lazy_journal_init=0`, then `e2fsck -fn`, default mount options).",
	"- `first` rows write the fresh region once, not time based; that is also the prefill, so every later read reads written data. The other rows are time based: \($p.runtime_s) s after a \($p.ramp_s) s ramp. Writes end with `end_fsync=1`, which fio counts in the job time.",
	"- Data check: fio `verify=crc32c` of 64 MiB written at QD16, read back after the raw rows.",
	"- loop direct I/O as /sys/block/loopN/loop/dio reported it: " + ([$d.setup | to_entries[] | "\(.key) \(.value.loop_dio)"] | join(", ")) + ".",
	"",
	"Setup of each target, in the work directory:",
	"",
	($ts[] as $t | select($d.setup[$t] != null) | "- \($t | tlabel) (`\($t)`):", "  ```", ($d.setup[$t].commands[] | "  \(.)"), "  ```"),
	"",
	"fio command lines (FILENAME is the loop device, or MOUNTPOINT/fio.dat for the ext4 rows):",
	"",
	"```",
	($order[] as $w | select($d.fio_commands[$w] != null) | $d.fio_commands[$w]),
	"```",
	"",
	"Every run’s numbers (bandwidth, IOPS, mean and p99 completion latency, fio command): `blockdev.json`, `results`; medians: `summary`."
' "$OUT/blockdev.json" >"$OUT/blockdev.md" || die "writing $OUT/blockdev.md"

log "wrote $OUT/blockdev.md and $OUT/blockdev.json"
cat "$OUT/blockdev.md"
