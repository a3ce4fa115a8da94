package main

import (
	"bytes"
	"time"

	"github.com/thinpool/thinpool/thinpool"
)

// xferChunk is how much import and export read at a time. Pool block sizes
// are powers of two, so a chunk starts on a block boundary when blocks are
// smaller and a block on a chunk boundary when they are larger.
const xferChunk = 1 << 20

// importSyncBytes is how much an import writes between two commits, so the
// blocks it frees by overwriting zeros can be reused before it ends.
const importSyncBytes = 1 << 30

// zeroChunk is xferChunk zeros to compare with.
var zeroChunk [xferChunk]byte

// isZero reports whether b (at most xferChunk bytes) is all zeros.
func isZero(b []byte) bool { return bytes.Equal(b, zeroChunk[:len(b)]) }

// zeroRuns splits b into runs of granules of g bytes (the last may be
// shorter) that are all zeros or not, and calls fn with each run's bounds.
// Adjacent granules of the same kind form one run.
func zeroRuns(b []byte, g int, fn func(lo, hi int, zero bool) error) error {
	start, zero := 0, false
	for i := 0; i < len(b); i += g {
		z := isZero(b[i:min(i+g, len(b))])
		if i > start && z != zero {
			if err := fn(start, i, zero); err != nil {
				return err
			}
			start = i
		}
		zero = z
	}
	if start < len(b) {
		return fn(start, len(b), zero)
	}
	return nil
}

// granule is the unit in which import and export look for zeros: a pool
// block, or a chunk when blocks are larger.
func granule(p *thinpool.Pool) int64 { return min(p.BlockSize(), xferChunk) }

func alignDown(n, m int64) int64 { return n / m * m }

// rate formats bytes per second over d.
func rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return formatSize(int64(float64(n)/d.Seconds())) + "/s"
}
