#!/bin/sh
# engine.sh runs the thinpool engine benchmarks (thinpool/bench_test.go) and
# summarises them with benchstat, plus the ratios the targets are set on.
#
#   bench/engine.sh            # ~10 minutes, needs ~16 GiB free in $TMPDIR
#   COUNT=10 bench/engine.sh   # more runs of the fast benchmarks
#
# The disk of a virtual machine varies a lot from minute to minute, so the
# fast benchmarks run COUNT times, interleaved (-count repeats the whole
# top-level benchmark, so thin and plain alternate), and the ratios are of
# medians and of the best runs, and of CPU time (cpu-ns/op), which a busy
# machine disturbs far less than wall time. The slow ones (a 10 GiB origin,
# a 1M-extent pool) run once.
set -eu
cd "$(dirname "$0")/.."
COUNT=${COUNT:-5}
OUT=${OUT:-$(mktemp -t engine-bench.XXXXXX)}
BENCHSTAT=${BENCHSTAT:-$(command -v benchstat || echo "$(go env GOPATH)/bin/benchstat")}

go test -run '^$' -bench 'SeqWrite|CoWRandom4K' \
	-benchtime 1x -count "$COUNT" -timeout 60m ./thinpool/ | tee "$OUT"
# A read pass takes ~0.1 s (page cache): average 10 of them per sample.
go test -run '^$' -bench 'SeqRead|ReadDepth' \
	-benchtime 10x -count "$COUNT" -timeout 60m ./thinpool/ | tee -a "$OUT"
go test -run '^$' -bench 'SnapshotCreate|Metadata|Open' \
	-benchtime 4x -count 1 -timeout 60m ./thinpool/ | tee -a "$OUT"

if [ -x "$BENCHSTAT" ]; then
	"$BENCHSTAT" "$OUT"
else
	echo "benchstat not found: go install golang.org/x/perf/cmd/benchstat@latest"
fi

# Ratios of the throughputs (MB/s; 1/ns for ReadDepth), of medians and of
# the best run: other processes on a shared machine only ever slow a run
# down, so the best run is the better estimate when the machine is busy.
awk '
/^Benchmark/ {
	name = $1; sub(/-[0-9]+$/, "", name)
	for (i = 3; i < NF; i++) {
		if ($(i+1) == "MB/s") v[name, ++n[name]] = $i
		if ($(i+1) == "ns/op" && name ~ /ReadDepth/) v[name, ++n[name]] = 1e9 / $i
		# CPU time as a throughput too, so that higher is better.
		if ($(i+1) == "cpu-ns/op") v["cpu " name, ++n["cpu " name]] = 1e9 / $i
	}
}
function sorted(name, a,   k, m, t, i, j) {
	m = n[name]
	for (k = 1; k <= m; k++) a[k] = v[name, k]
	for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return m
}
function median(name,   a, m) {
	m = sorted(name, a)
	if (m == 0) return 0
	return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
}
function best(name,   a, m) {
	m = sorted(name, a)
	return m ? a[m] : 0
}
function ratio(what, x, y, target,   rm, rb, rc) {
	if (median(x) == 0 || median(y) == 0) return
	rm = median(x) / median(y); rb = best(x) / best(y)
	rc = median("cpu " y) ? median("cpu " x) / median("cpu " y) : 0
	printf "%-46s median %5.2f  best %5.2f  cpu %5.2f  target %s: %s\n", what, rm, rb, rc, target, (rm >= target || rb >= target) ? "pass" : "FAIL"
}
END {
	print ""
	print "ratios (thin / baseline)"
	ratio("SeqWrite thin-fresh / plainfile", "BenchmarkSeqWrite/thin-fresh", "BenchmarkSeqWrite/plainfile", 0.7)
	ratio("SeqWrite thin-overwrite / plainfile-overwrite", "BenchmarkSeqWrite/thin-overwrite", "BenchmarkSeqWrite/plainfile-overwrite", 0.9)
	ratio("SeqRead thin / plainfile", "BenchmarkSeqRead/thin", "BenchmarkSeqRead/plainfile", 0.9)
	ratio("ReadDepth 100 / 1", "BenchmarkReadDepth/100", "BenchmarkReadDepth/1", 0.9)
}' "$OUT"
echo "raw results: $OUT"
