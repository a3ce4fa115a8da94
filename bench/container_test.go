package bench

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
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

// TestOverlayImport: overlayImport extracts every layer of the image into its own directory.
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
