package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"testing"
	"time"
)

// FuzzApply applies arbitrary bytes as a layer on top of a small lower
// layer. Apply must not panic, must not touch anything outside the root
// (newRoot's cleanup checks that), and must never create a whiteout file
// (W2).
func FuzzApply(f *testing.F) {
	seeds := [][]ent{
		lowerTree,
		{dir("d/", 0o755), reg("d/f", "data", 0o4755), sym("d/s", "f"), hard("d/h", "d/f"), fifo("d/p", 0o600)},
		{reg("../../"+canary, "x", 0o644)},
		{reg("/etc/"+canary, "x", 0o644)},
		{sym("evil", "/"), reg("evil/etc/"+canary, "x", 0o644)},
		{sym("evil", "../../.."), reg("evil/"+canary, "x", 0o644)},
		{sym("up", "../.."), wh("up/.wh.sentinel"), wh("up/a/.wh..wh..opq")},
		{hard("hl", "../../etc/passwd")},
		{sym("s", "/etc/passwd"), hard("hl", "s"), reg("hl", "x", 0o644)},
		{wh("etc/.wh.a"), wh("var/lib/.wh..wh..opq"), reg("var/lib/n", "n", 0o644), wh(".wh.lnk")},
		{reg("f", "x", 0o644).with(xattr("user.a", "b")), dir("d/", 0o755).with(xattr("security.capability", capV2))},
		{{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}}},
	}
	for _, s := range seeds {
		f.Add(mkTar(f, s...))
	}
	f.Add(sparseTar("sparse", 1<<20))
	lower := mkTar(f, lowerTree...)
	f.Fuzz(func(t *testing.T, data []byte) {
		root := newRoot(t)
		if _, err := Apply(context.Background(), root, bytes.NewReader(lower), testOpts(Options{})); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		o := Options{MaxEntries: 1000, MaxFileSize: 1 << 24}
		Apply(ctx, root, bytes.NewReader(data), testOpts(o)) // errors are fine; see the checks
		noWhiteoutFiles(t, root)
	})
}
