package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/thinpool/thinpool/thinpool"
)

func TestDeviceDiffCommand(t *testing.T) {
	path := xferPool(t)
	img := makeTestImage(t, []imageRun{{runData, 4}, {runHole, 6}, {runData, 10}}, 0)
	xferMustRun(t, path, nil, "device", "import", "base", img.path)
	xferMustRun(t, path, nil, "snapshot", "create", "base", "snap")

	out := xferMustRun(t, path, nil, "device", "diff", "base", "snap")
	if !strings.Contains(out, `map the same blocks`) {
		t.Errorf("diff of a fresh snapshot:\n%s", out)
	}

	const bs = thinpool.DefaultBlockSize
	xferWithPool(t, path, func(p *thinpool.Pool) {
		snap, err := p.Device("snap")
		if err != nil {
			t.Fatal(err)
		}
		block := make([]byte, 2*bs)
		for i := range block {
			block[i] = byte(i%251) + 1
		}
		for _, w := range []struct{ off, n int64 }{{1 * bs, 2 * bs}, {5 * bs, 10}, {19*bs + 7, 1}} {
			if _, err := snap.WriteAt(block[:w.n], w.off); err != nil {
				t.Fatal(err)
			}
		}
		if err := snap.Discard(12*bs, 2*bs); err != nil {
			t.Fatal(err)
		}
		if err := p.Sync(); err != nil {
			t.Fatal(err)
		}
	})

	var got diffJSON
	if err := json.Unmarshal([]byte(xferMustRun(t, path, nil, "--json", "device", "diff", "base", "snap")), &got); err != nil {
		t.Fatal(err)
	}
	want := []thinpool.DiffRange{{Begin: 1, Len: 2, Kind: thinpool.DiffDifferent}, {Begin: 5, Len: 1, Kind: thinpool.DiffRightOnly}, {Begin: 12, Len: 2, Kind: thinpool.DiffLeftOnly}, {Begin: 19, Len: 1, Kind: thinpool.DiffDifferent}}
	if got.BlockSize != bs || !slices.Equal(got.Ranges, want) {
		t.Errorf("diff = %+v, want block size %d and ranges %v", got, bs, want)
	}

	out = xferMustRun(t, path, nil, "device", "diff", "base", "snap")
	for _, s := range []string{"BEGIN", "END", "LENGTH", "KIND", "1 (64 KiB)", "3 (192 KiB)", "2 (128 KiB)", "right-only",
		`Devices "base" and "snap" differ in 6 blocks (384 KiB) in 4 ranges: 2 left-only, 1 right-only, 3 different`} {
		if !strings.Contains(out, s) {
			t.Errorf("diff table lacks %q:\n%s", s, out)
		}
	}
	out = xferMustRun(t, path, nil, "device", "diff", "snap", "base")
	if !strings.Contains(out, "2 right-only, 1 left-only") && !strings.Contains(out, "1 left-only, 2 right-only") {
		t.Errorf("swapped diff:\n%s", out)
	}

	for _, args := range [][]string{{"base", "x"}, {"x", "base"}} {
		stdout, stderr, code := xferRun(t, path, nil, append([]string{"device", "diff"}, args...)...)
		if code == 0 || stdout != "" || stderr != "thinctl: device \"x\" not found\n" {
			t.Errorf("diff %v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
}
