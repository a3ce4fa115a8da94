package bench

import (
	"context"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// engineJob is the Go equivalent of a fio job, run against the engine's
// API (thinpool.Thin) by iodepth goroutines, each with one I/O in flight:
// the way the FUSE server calls the engine.
type engineJob struct {
	write bool
	bs    int64
	qd    int
	size  int64 // region: the first size bytes of the device
	// random picks bs-aligned offsets at random; otherwise one pass in
	// order, ending after the region or runtime.
	random  bool
	runtime time.Duration
	ramp    time.Duration // random jobs: unmeasured warm-up
	// ios, when set, makes a random job do exactly this many I/Os, each
	// block at most once, instead of running for runtime.
	ios  int64
	seed uint64
}

// engineDev is what an engine job needs of a thin device.
type engineDev interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// runEngine runs j against d and returns the I/Os measured and the time
// they took; writes end with a Sync, counted in the time, like fio's
// end_fsync.
func runEngine(ctx context.Context, d engineDev, j engineJob) (ios int64, elapsed time.Duration, err error) {
	var (
		next    atomic.Int64 // sequential: next offset; random with ios: next index
		counted atomic.Int64
		errOnce sync.Once
		firstEr error
	)
	blocks := j.size / j.bs
	var perm []int64
	if j.ios > 0 {
		r := rand.New(rand.NewPCG(j.seed, 1))
		perm = make([]int64, blocks)
		for i := range perm {
			perm[i] = int64(i)
		}
		r.Shuffle(len(perm), func(a, b int) { perm[a], perm[b] = perm[b], perm[a] })
		perm = perm[:min(j.ios, blocks)]
	}
	start := time.Now()
	measureFrom := start
	if j.random && j.ios == 0 {
		measureFrom = start.Add(j.ramp)
	}
	deadline := measureFrom.Add(j.runtime)
	var wg sync.WaitGroup
	for w := range j.qd {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, j.bs)
			r := rand.New(rand.NewPCG(j.seed, uint64(w)+2))
			for i := range buf {
				buf[i] = byte(r.Uint32())
			}
			for ctx.Err() == nil {
				var off int64
				switch {
				case perm != nil:
					i := next.Add(1) - 1
					if i >= int64(len(perm)) {
						return
					}
					off = perm[i] * j.bs
				case j.random:
					off = r.Int64N(blocks) * j.bs
				default:
					off = (next.Add(1) - 1) * j.bs
					if off >= blocks*j.bs {
						return
					}
				}
				now := time.Now()
				if perm == nil && now.After(deadline) {
					return
				}
				var err error
				if j.write {
					buf[0]++ // every write different
					_, err = d.WriteAt(buf, off)
				} else {
					_, err = d.ReadAt(buf, off)
				}
				if err != nil {
					errOnce.Do(func() { firstEr = err })
					return
				}
				if !now.Before(measureFrom) {
					counted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if firstEr == nil && j.write {
		firstEr = d.Sync()
	}
	if firstEr == nil {
		firstEr = ctx.Err()
	}
	return counted.Load(), time.Since(measureFrom), firstEr
}
