package report

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thinpool/thinpool/bench"
)

// testReport is a small report with one table of each kind: block I/O,
// IOPS, first write (bars), a depth and a size series, a lower-is-better
// table in bytes, and a workload that failed.
func testReport() *bench.Report {
	start := time.Date(2026, 11, 23, 17, 25, 13, 0, time.UTC)
	row := func(id, title string, x float64, samples map[string][]float64) *bench.Row {
		return &bench.Row{ID: id, Title: title, X: x, Samples: samples}
	}
	seq := row("seqwrite", "seq write 1 MiB", 0, map[string][]float64{
		"thinpool": {900, 1000, 1100},
		"engine":   {2000, 2100, 2200},
		"plain":    {1300, 1400, 1200},
	})
	seq.Notes = map[string]string{"thinpool": "page cache | absorbs rewrites", "qcow2": "skipped: not installed"}
	seqRead := row("seqread", "seq read 1 MiB", 0, map[string][]float64{
		"thinpool": {4000, 4176},
		"plain":    {1049},
	})
	seqRead.Notes = map[string]string{"overlayfs": "no block device"}
	return &bench.Report{
		Version:  1,
		Started:  start,
		Finished: start.Add(9*time.Minute + 32*time.Second),
		Command:  "thinctl bench --out bench/results",
		Commit:   "7c351a3",
		Machine: bench.Machine{
			Kernel: "6.18.44", CPU: "AMD EPYC", Cores: 2, MemoryB: 24 << 30,
			WorkDir: "/tmp/thinpool-bench.1", WorkFS: "ext4 on /dev/vda",
			LoadAvg: [2]string{"2.59 3.44 5.06", "2.18 2.91 4.08"},
			Tools:   map[string]string{"fio": "fio-3.33"}, GoVersion: "go1.26.8",
		},
		Config: bench.DefaultConfig(),
		Targets: []*bench.Target{
			{ID: "thinpool", Name: "thinpool", About: "ours", Setup: []string{"thinctl pool create", "thinctl device attach d"}},
			{ID: "engine", Name: "engine", About: "ours, in Go"},
			{ID: "plain", Name: "plain loop", About: "the limit"},
			{ID: "qcow2", Name: "qcow2", About: "qemu", Skipped: "not installed: qemu-img"},
			{ID: "overlayfs", Name: "overlayfs", About: "overlay"},
			{ID: "dm-thin", Name: "dm-thin", About: "kernel"},
		},
		Tables: []*bench.Table{
			{ID: "fio-seq", Title: "Sequential I/O", Unit: "MiB/s", Method: "fio, 1 MiB blocks.",
				Commands: []string{"fio --rw=write"}, Rows: []*bench.Row{seq, seqRead}},
			{ID: "fio-rand", Title: "Random I/O", Unit: "IOPS", Rows: []*bench.Row{
				row("randwrite", "rand write 4 KiB", 0, map[string][]float64{"thinpool": {33300}, "plain": {57900}}),
			}},
			{ID: "firstwrite", Title: "First write", Unit: "IOPS", Rows: []*bench.Row{
				row("qd16", "qd16", 0, map[string][]float64{"thinpool": {12000, 13000}, "plain": {20000, 21000}}),
				row("qd1", "qd1", 0, map[string][]float64{"thinpool": {3000, 3100}, "plain": {4000, 4100}}),
			}},
			{ID: "depth-seq", Title: "Read through a snapshot chain", Unit: "MiB/s", XLabel: "snapshot depth", Rows: []*bench.Row{
				row("d1", "depth 1", 1, map[string][]float64{"thinpool": {1000, 1100}, "plain": {1200, 1300}}),
				row("d10", "depth 10", 10, map[string][]float64{"thinpool": {990, 1000}, "plain": {1200, 1300}}),
				row("d100", "depth 100", 100, map[string][]float64{"thinpool": {980, 1000}}),
			}},
			{ID: "snapshot", Title: "Snapshot creation", Unit: "ms", Lower: true, XLabel: "origin size (GiB)",
				Goal: "under 10 ms at any origin size", Rows: []*bench.Row{
					row("1", "1 GiB", 1, map[string][]float64{"thinpool": {2, 2.5, 3}, "engine": {1, 1, 1}, "plain": {10, 10, 12}}),
					row("10", "10 GiB", 10, map[string][]float64{"thinpool": {2, 2.5, 3}, "plain": {100, 110, 120}}),
				}},
			{ID: "container", Title: "Container start", Unit: "ms", Lower: true,
				Notes: []string{"failed: boom: no such image"}},
			{ID: "metadata", Title: "Metadata size", Unit: "bytes/GiB", Lower: true, Rows: []*bench.Row{
				row("4g", "4 GiB mapped", 0, map[string][]float64{"thinpool": {1.5 * (1 << 20)}, "dm-thin": {3 << 20}}),
			}},
		},
	}
}

func TestCompact(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{
		{0, "0"}, {0.5213, "0.521"}, {5, "5"}, {12.34, "12.3"}, {99.97, "100"},
		{1316.4, "1316"}, {9999.4, "9999"}, {9999.6, "10k"}, {12345, "12.3k"},
		{57900, "57.9k"}, {123456, "123k"}, {999600, "1M"}, {2.5e6, "2.5M"}, {3e9, "3G"},
	} {
		if got := compact(tc.v); got != tc.want {
			t.Errorf("compact(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

func TestMarkdown(t *testing.T) {
	md := Markdown(testReport(), []string{"firstwrite.svg", "depth-seq.svg", "snapshot.svg"})
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"header", []string{
			"# thinpool benchmarks", "`make bench`", "`make bench-deps`",
			"2026-11-23T17:25:13Z – 2026-11-23T17:34:45Z (9m32s)", "7c351a3",
			"`thinctl bench --out bench/results`", "24 GiB RAM", "ext4 on /dev/vda",
			"2.59 3.44 5.06 at the start, 2.18 2.91 4.08 at the end", "fio: `fio-3.33`",
			"3 runs", "snapshot depths 1, 10, 100", "snapshot origins 1.0 GiB, 10 GiB, 100 GiB",
		}},
		{"targets", []string{
			"- **qcow2** (`qcow2`): qemu\n  *Skipped:* not installed: qemu-img\n",
			"  ```\n  thinctl pool create\n  thinctl device attach d\n  ```\n",
		}},
		{"median, range and ratio", []string{
			"| Case | thinpool | engine | plain loop | overlayfs | thinpool / plain loop | engine / plain loop |",
			"| seq write 1 MiB | 1000 (900–1100) <sup>1</sup> | 2100 (2000–2200) | 1300 (1200–1400) | – | 0.769× (0.692–0.917) | 1.62× (1.5–1.83) |",
			// Different run counts: no per-run range.
			"| seq read 1 MiB | 4088 (4000–4176) | – | 1049 | no block device | 3.9× | – |",
			`<sup>1</sup> thinpool, seq write 1 MiB: page cache | absorbs rewrites`,
		}},
		{"thousands", []string{"| rand write 4 KiB | 33.3k | 57.9k | 0.575× |"}},
		{"lower is better inverted", []string{
			"*ms, lower is better; median of 3 runs (min–max).*",
			"| 1 GiB | 2.5 (2–3) | 1 | 10 (10–12) | 4× (4–5) | 10× (10–12) |",
			"| 10 GiB | 2.5 (2–3) | – | 110 (100–120) | 44× (40–50) | – |",
			"**Goal:** under 10 ms at any origin size",
		}},
		{"bytes", []string{"| 4 GiB mapped | 1.5 MiB | 3.0 MiB | 2× |"}},
		{"failed table", []string{"## Container start\n\n- failed: boom: no such image\n"}},
		{"plots", []string{"![First write](firstwrite.svg)", "![Read through a snapshot chain](depth-seq.svg)"}},
		{"commands", []string{"<details><summary>Commands</summary>\n\n```\nfio --rw=write\n```\n\n</details>"}},
		{"headline", []string{
			"**Sequential I/O** (MiB/s, higher is better): thinpool 0.769× (seq write 1 MiB) to 3.9× (seq read 1 MiB) vs plain loop, geometric mean 1.73× over 2 rows",
			"**Snapshot creation** (ms, lower is better): thinpool 4× (1 GiB) to 44× (10 GiB) vs plain loop",
			"**Metadata size** (bytes/GiB, lower is better): thinpool 2× vs dm-thin",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, w := range tc.want {
				if !strings.Contains(md, w) {
					t.Errorf("markdown lacks %q", w)
				}
			}
		})
	}
	t.Run("skipped target has no column", func(t *testing.T) {
		// The goals name qcow2 in their text; the tables after them must not.
		_, tables, _ := strings.Cut(md, "## Targets")
		for _, l := range strings.Split(tables, "\n") {
			if strings.HasPrefix(l, "|") && strings.Contains(l, "qcow2") {
				t.Errorf("table line mentions the skipped qcow2: %q", l)
			}
		}
	})
	t.Run("goals", func(t *testing.T) {
		for _, w := range []string{"## Goals", "| **read throughput at the deepest snapshot within 10% of depth 1** |", "| not measured |"} {
			if !strings.Contains(md, w) {
				t.Errorf("markdown lacks %q", w)
			}
		}
	})
	t.Run("no plot link without a plot", func(t *testing.T) {
		if strings.Contains(md, "fio-seq.svg") {
			t.Error("markdown links fio-seq.svg, which was not drawn")
		}
	})
	if t.Failed() {
		t.Log(md)
	}
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	rep := testReport()
	if err := Write(rep, dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, File))
	if err != nil {
		t.Fatal(err)
	}
	svgs, _ := filepath.Glob(filepath.Join(dir, "*.svg"))
	var names []string
	for _, f := range svgs {
		names = append(names, filepath.Base(f))
	}
	slices.Sort(names)
	if want := []string{"depth-seq.svg", "firstwrite.svg", "snapshot.svg"}; !slices.Equal(names, want) {
		t.Fatalf("plots %q, want %q", names, want)
	}
	for _, n := range names {
		t.Run(n, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, n))
			if err != nil {
				t.Fatal(err)
			}
			b = bytes.TrimSpace(b)
			if !bytes.HasPrefix(b, []byte("<?xml")) && !bytes.HasPrefix(b, []byte("<svg")) {
				t.Errorf("not SVG: %.40q", b)
			}
			if !bytes.HasSuffix(b, []byte("</svg>")) {
				t.Errorf("SVG not closed: …%q", b[max(0, len(b)-40):])
			}
			if !bytes.Contains(md, []byte("("+n+")")) {
				t.Errorf("%s does not link %s", File, n)
			}
		})
	}
}

// TestEmpty checks that a report with nothing in it still renders.
func TestEmpty(t *testing.T) {
	rep := &bench.Report{Tables: []*bench.Table{{ID: "depth-seq", XLabel: "depth"}, {ID: "firstwrite"}}}
	if err := Write(rep, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if md := Markdown(rep, nil); !strings.Contains(md, "No table has values") {
		t.Errorf("empty report: %s", md)
	}
}
