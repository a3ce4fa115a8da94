//go:build linux && integration

package test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thinpool/thinpool/bench"
	"github.com/thinpool/thinpool/bench/report"
)

// TestBenchQuick runs thinctl bench --quick as a user would and checks that
// every workload measured thinpool and the peers that are installed, that
// the report renders, and that nothing is left mounted or attached.
func TestBenchQuick(t *testing.T) {
	requireRoot(t)
	requireTool(t, "fio")
	work, out := t.TempDir(), t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, thinctlBin, "bench", "--quick", "--dir", work, "--out", out, "--log", filepath.Join(out, "bench.log"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		log, _ := os.ReadFile(filepath.Join(out, "bench.log"))
		t.Fatalf("thinctl bench --quick: %v\n%s\n%s\nlog:\n%s", err, stderr.String(), stdout.String(), log)
	}
	t.Logf("thinctl bench --quick took %s:\n%s", time.Since(start).Round(time.Second), stdout.String())

	f, err := os.Open(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := bench.ReadReport(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Tables) < 6 {
		t.Errorf("%d tables, want one per workload at least", len(rep.Tables))
	}
	for _, tb := range rep.Tables {
		if len(tb.Notes) > 0 {
			t.Errorf("table %s: %v", tb.ID, tb.Notes)
		}
		if len(tb.Rows) == 0 {
			t.Errorf("table %s has no rows", tb.ID)
		}
		ours := bench.TargetThinpool
		if tb.ID == "metadata" {
			ours = bench.TargetEngine
		}
		for _, r := range tb.Rows {
			if len(r.Samples[ours]) == 0 {
				t.Errorf("%s / %s: no %s sample (notes %v)", tb.ID, r.ID, ours, r.Notes)
			}
			for _, ref := range []string{bench.TargetPlain, bench.TargetQcow2, bench.TargetOverlayfs} {
				if n := r.Notes[ref]; strings.Contains(n, "failed") {
					t.Errorf("%s / %s: %s %s", tb.ID, r.ID, ref, n)
				}
			}
			for tg, v := range r.Samples {
				for _, x := range v {
					if !(x > 0) {
						t.Errorf("%s / %s / %s: sample %v", tb.ID, r.ID, tg, x)
					}
				}
			}
		}
	}
	if tb := rep.Table("fio-seq"); tb != nil {
		for _, r := range tb.Rows {
			if len(r.Samples[bench.TargetPlain]) == 0 {
				t.Errorf("fio-seq / %s: no sample of the plain loop device", r.ID)
			}
		}
	} else {
		t.Error("no fio-seq table")
	}

	dir := t.TempDir()
	if err := report.Write(rep, dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, report.File))
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range rep.Tables {
		if !bytes.Contains(md, []byte(tb.Title)) {
			t.Errorf("REPORT.md lacks table %q", tb.Title)
		}
	}
	svgs, _ := filepath.Glob(filepath.Join(dir, "*.svg"))
	if len(svgs) < 3 {
		t.Errorf("plots: %v, want depth, snapshot and first-write plots", svgs)
	}

	// Nothing of the work directory is left mounted or attached.
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), work) {
		t.Errorf("still mounted under %s:\n%s", work, mi)
	}
	if lo, err := exec.Command("losetup", "-l", "-n", "-O", "BACK-FILE").Output(); err == nil && strings.Contains(string(lo), work) {
		t.Errorf("loop devices still attached to files in %s:\n%s", work, lo)
	}
	if ents, _ := os.ReadDir(work); len(ents) > 0 {
		t.Errorf("work directory %s not removed: %v", work, ents)
	}
}

// TestBenchBadInput checks that bad flags fail at once with one line and
// leave nothing behind.
func TestBenchBadInput(t *testing.T) {
	requireRoot(t)
	work := t.TempDir()
	for _, args := range [][]string{
		{"--workloads", "nope"},
		{"--targets", "zfs"},
		{"--size", "1M"},
		{"--size", "lots"},
		{"--runs", "0"},
		{"--dir", filepath.Join(work, "missing")},
	} {
		cmd := exec.Command(thinctlBin, append([]string{"bench", "--dir", work}, args...)...)
		if args[0] == "--dir" {
			cmd = exec.Command(thinctlBin, append([]string{"bench"}, args...)...)
		}
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("thinctl bench %v succeeded:\n%s", args, out)
			continue
		}
		if lines := strings.Count(strings.TrimSpace(string(out)), "\n"); lines > 0 {
			t.Errorf("thinctl bench %v: %d lines of error, want one:\n%s", args, lines+1, out)
		}
	}
	if ents, _ := os.ReadDir(work); len(ents) > 0 {
		t.Errorf("bad input left %v in %s", ents, work)
	}
}
