package bench

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/thinpool/thinpool/volumes/archive"
)

// The streamed docker save tarball is one the importer accepts: right
// layer count, diff IDs that match the layers' content.
func TestWriteDockerSave(t *testing.T) {
	const big = 1 << 20
	img, err := buildBenchImage(t.TempDir(), big)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, name string
		layers     int
	}{
		{img.path, containerRef, 4},
		{img.warmup, warmupRef, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := archive.Open(tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if len(a.Images) != 1 || a.Images[0].Name != tc.name || len(a.Images[0].Layers) != tc.layers {
				t.Fatalf("archive holds %+v", a.Images)
			}
			for i, l := range a.Images[0].Layers {
				rc, err := l.Open()
				if err != nil {
					t.Fatal(err)
				}
				_, err = io.Copy(io.Discard, rc) // the verifier checks the diff ID
				rc.Close()
				if err != nil {
					t.Fatalf("layer %d: %v", i+1, err)
				}
			}
		})
	}
}

// overlayImport extracts every layer of the image into its own directory.
func TestOverlayImport(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (the layers' files belong to root)")
	}
	const big = 1<<20 + 4096
	img, err := buildBenchImage(t.TempDir(), big)
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := overlayImport(context.Background(), img.path, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) != 4 {
		t.Fatalf("%d layer directories", len(dirs))
	}
	fi, err := os.Stat(filepath.Join(dirs[2], containerBigFile))
	if err != nil || fi.Size() != big {
		t.Fatalf("big file: %v, %v", fi, err)
	}
	b, err := os.ReadFile(filepath.Join(dirs[3], "app/VERSION"))
	if err != nil || !bytes.Equal(b, []byte(appVersion)) {
		t.Fatalf("app/VERSION: %q, %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(dirs[0], "bin/sh")); err != nil || l != "/usr/bin/busybox" {
		t.Fatalf("bin/sh: %q, %v", l, err)
	}
	var files int
	filepath.WalkDir(dirs[0], func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files++
		}
		return err
	})
	if files != baseLayerFiles {
		t.Fatalf("base layer has %d files, want %d", files, baseLayerFiles)
	}
}

// TestContainerWorkload runs the workload for real, small: as root, with
// THINPOOL_BENCH=1 and bin/thinctl built (go build -o bin/thinctl
// ./cmd/thinctl). THINPOOL_BENCH_RUNS sets the number of runs and
// THINPOOL_BENCH_DIR where the work directory goes.
func TestContainerWorkload(t *testing.T) {
	if os.Geteuid() != 0 || os.Getenv("THINPOOL_BENCH") != "1" {
		t.Skip("needs root and THINPOOL_BENCH=1")
	}
	thinctl, err := filepath.Abs("../bin/thinctl")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(thinctl); err != nil {
		t.Skip("no bin/thinctl: go build -o bin/thinctl ./cmd/thinctl")
	}
	cfg := QuickConfig()
	cfg.Workloads = []string{"container"}
	cfg.Targets = []string{TargetThinpool, TargetOverlayfs}
	cfg.Thinctl = thinctl
	cfg.Log = os.Stderr
	if n, err := strconv.Atoi(os.Getenv("THINPOOL_BENCH_RUNS")); err == nil {
		cfg.Runs = n
	}
	if s := os.Getenv("THINPOOL_BENCH_DIR"); s != "" {
		cfg.Dir = s
	}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var sum bytes.Buffer
	if err := rep.WriteSummary(&sum); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + sum.String())
	for _, id := range []string{"container", "container-space"} {
		tb := rep.Table(id)
		if tb == nil {
			t.Fatalf("no table %s", id)
		}
		if len(tb.Notes) > 0 {
			t.Errorf("%s: %v", id, tb.Notes)
		}
		for _, r := range tb.Rows {
			for _, tg := range []string{TargetThinpool, TargetOverlayfs} {
				if len(r.Samples[tg]) != cfg.Runs {
					t.Errorf("%s %s %s: %d samples, want %d (%s)", id, r.ID, tg, len(r.Samples[tg]), cfg.Runs, r.Notes[tg])
				}
			}
		}
	}
}
