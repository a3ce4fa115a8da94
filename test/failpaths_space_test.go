//go:build linux && integration

package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thinpool/thinpool/daemon"
)

// newEnvCreate is newEnv with the pool created by 'pool create ARGS...'.
func newEnvCreate(t *testing.T, args ...string) *env {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	e := &env{t: t, dir: dir, pool: filepath.Join(dir, "pool.img"), runDir: filepath.Join(dir, "run")}
	t.Setenv("THINPOOL_RUN_DIR", e.runDir)
	t.Cleanup(e.cleanup)
	e.must(append([]string{"pool", "create"}, args...)...)
	return e
}

// dataTotal is the pool's data size, from 'pool info --json'.
func (e *env) dataTotal() int64 {
	e.t.Helper()
	var i struct {
		DataTotal int64 `json:"dataTotal"`
	}
	if err := json.Unmarshal([]byte(e.must("--json", "pool", "info")), &i); err != nil {
		e.t.Fatal(err)
	}
	return i.DataTotal
}

func (e *env) daemonLog() string {
	b, _ := os.ReadFile(filepath.Join(daemon.RunDir(e.pool), "daemon.log"))
	return string(b)
}

// TestAutoextendUnderFio: a 64 MiB pool created with an autoextend policy,
// as LVM's thin_pool_autoextend_threshold/_percent, takes a 320 MiB fio
// write with verification through the daemon's loop device: the daemon
// warns as use crosses 80/90/95% and grows the pool instead of failing the
// writes; every block fio wrote reads back as written, and the pool checks
// clean.
func TestAutoextendUnderFio(t *testing.T) {
	requireTool(t, "fio")
	e := newEnvCreate(t, "--size", "64M", "--autoextend-threshold", "80", "--autoextend-percent", "20")
	e.must("device", "create", "data", "--size", "1G")
	dev := strings.TrimSpace(e.must("device", "attach", "data"))
	// Two passes, so that the pool also grows while reads verify.
	for _, rw := range []string{"write", "randwrite"} {
		mustSh(t, 5*time.Minute, fmt.Sprintf("cd %s && fio --name=autoextend-%s --filename=%s --rw=%s --bs=64k --size=160M --offset=%s "+
			"--direct=1 --ioengine=libaio --iodepth=8 --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=0 --output-format=terse >/dev/null",
			e.dir, rw, dev, rw, map[string]string{"write": "0", "randwrite": "256M"}[rw]))
	}
	// Again, now that nothing is cached: all 320 MiB read back as written.
	mustSh(t, 5*time.Minute, fmt.Sprintf("cd %s && fio --name=autoextend-write --filename=%s --rw=write --bs=64k --size=160M --offset=0 "+
		"--direct=1 --ioengine=libaio --iodepth=8 --verify=crc32c --verify_fatal=1 --verify_only --output-format=terse >/dev/null", e.dir, dev))
	total := e.dataTotal()
	if total < 320<<20 {
		t.Fatalf("after writing 320 MiB the pool has %d bytes of data space", total)
	}
	// Which of 80/90/95% each check sees crossed depends on how fast fio
	// writes (TestSpaceWarningsInDaemonLog takes them one at a time); each
	// grow follows a warning.
	log := e.daemonLog()
	warn := strings.Index(log, "WARNING: pool "+e.pool+" data space is now ")
	grew := strings.Index(log, "autoextend: grew pool "+e.pool+" data space from 67108864 to ")
	if warn < 0 || grew < warn || !strings.Contains(log[warn:], "full (crossed ") {
		t.Errorf("the daemon log lacks a warning followed by the first grow:\n%s", log)
	}
	if strings.Contains(log, "cannot grow") {
		t.Errorf("the daemon refused to grow:\n%s", log)
	}
	t.Logf("pool grew from 64 MiB to %d MiB; %d grows logged", total>>20, strings.Count(log, "autoextend: grew pool"))
	e.must("device", "detach", "data")
	e.must("daemon", "stop")
	e.check()
}

// waitLog waits up to 10s for the daemon log to contain want.
func (e *env) waitLog(want string) {
	e.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if strings.Contains(e.daemonLog(), want) {
			return
		}
	}
	e.t.Fatalf("the daemon log lacks %q after 10s:\n%s", want, e.daemonLog())
}

// TestSpaceWarningsInDaemonLog: without autoextend, the daemon logs each
// crossing of 80, 90 and 95% once, as dmeventd does; the pool does not
// grow, a write past its end fails with ENOSPC, and what was synced before
// reads back intact.
func TestSpaceWarningsInDaemonLog(t *testing.T) {
	e := newEnvCreate(t, "--size", "64M")
	e.must("device", "create", "data", "--size", "128M")
	dev := strings.TrimSpace(e.must("device", "attach", "data"))
	src := filepath.Join(e.dir, "src")
	mustSh(t, time.Minute, "head -c 64M /dev/urandom > "+src)
	// 64 KiB blocks: 1024 in the pool. Fill to 82%, 91%, 96%.
	prefix := "WARNING: pool " + e.pool + " data space is now "
	done := 0
	for _, step := range []struct {
		blocks  int
		crossed string
	}{{840, "80"}, {932, "90"}, {984, "95"}} {
		mustSh(t, time.Minute, fmt.Sprintf("dd if=%s of=%s bs=64k skip=%d seek=%d count=%d oflag=direct conv=fsync,notrunc status=none",
			src, dev, done, done, step.blocks-done))
		done = step.blocks
		e.waitLog(fmt.Sprintf("full (crossed %s%%)", step.crossed))
	}
	time.Sleep(time.Second) // a few more checks: nothing more to say
	log := e.daemonLog()
	if n := strings.Count(log, prefix); n != 3 {
		t.Fatalf("%d warnings, want one per crossing:\n%s", n, log)
	}
	// Past the end of the pool: ENOSPC, and no autoextend without a policy.
	if out, err := sh(t, time.Minute, fmt.Sprintf("dd if=/dev/zero of=%s bs=64k seek=%d count=100 oflag=direct conv=fsync status=none", dev, done)); err == nil {
		t.Fatalf("writing past a full pool succeeded: %s", out)
	}
	if total := e.dataTotal(); total != 64<<20 {
		t.Fatalf("a pool without autoextend grew to %d bytes", total)
	}
	if strings.Contains(e.daemonLog(), "autoextend") {
		t.Fatalf("autoextend without a policy:\n%s", e.daemonLog())
	}
	mustSh(t, time.Minute, fmt.Sprintf("cmp -n %d %s %s", done*64<<10, src, dev))
	e.must("device", "detach", "data")
	e.must("daemon", "stop")
	e.check()
}

// TestAutoextendNoHostRoom: autoextend grows the pool only while the host
// file system has room for the growth. The pool file lives on an 80 MiB
// tmpfs; the daemon grows a 32 MiB pool while it can, then logs once that
// the host is too full, and writes past the end fail with ENOSPC; what was
// synced before reads back intact and the pool checks clean.
func TestAutoextendNoHostRoom(t *testing.T) {
	requireRoot(t)
	host := t.TempDir()
	mustSh(t, time.Minute, "mount -t tmpfs -o size=80M thinpool-test "+host)
	t.Cleanup(func() { // after the env's cleanup (LIFO): the daemon is gone
		if out, err := sh(t, time.Minute, "umount "+host); err != nil {
			t.Errorf("umount %s: %v %s", host, err, out)
		}
	})
	e := &env{t: t, dir: host, pool: filepath.Join(host, "pool.img"), runDir: filepath.Join(t.TempDir(), "run")}
	t.Setenv("THINPOOL_RUN_DIR", e.runDir)
	t.Cleanup(e.cleanup)
	e.must("pool", "create", "--size", "32M", "--metadata-size", "4M", "--autoextend-threshold", "80", "--autoextend-percent", "20")
	e.must("device", "create", "data", "--size", "256M")
	dev := strings.TrimSpace(e.must("device", "attach", "data"))
	src := filepath.Join(t.TempDir(), "src")
	mustSh(t, time.Minute, "head -c 128M /dev/urandom > "+src)
	// 1 MiB at a time, each synced, until the pool can take no more.
	written := 0
	for ; written < 128; written++ {
		if _, err := sh(t, time.Minute, fmt.Sprintf("dd if=%s of=%s bs=1M skip=%d seek=%d count=1 oflag=direct conv=fsync,notrunc status=none",
			src, dev, written, written)); err != nil {
			break
		}
	}
	if written == 128 {
		t.Fatalf("128 MiB went into a pool on an 80 MiB file system")
	}
	log := e.daemonLog()
	if !strings.Contains(log, "autoextend: grew pool "+e.pool+" data space from 33554432 to ") {
		t.Errorf("the pool never grew:\n%s", log)
	}
	if n := strings.Count(log, "autoextend: cannot grow pool "+e.pool+" by "); n != 1 || !strings.Contains(log, "its file system has only") {
		t.Errorf("%d refusals logged, want 1 saying the host is full:\n%s", n, log)
	}
	total := e.dataTotal()
	t.Logf("%d MiB written; the pool grew from 32 to %d MiB and stopped", written, total>>20)
	if total <= 32<<20 || total > 80<<20 {
		t.Errorf("data space %d bytes: it should have grown, but not past the host's 80 MiB", total)
	}
	mustSh(t, time.Minute, fmt.Sprintf("cmp -n %d %s %s", written<<20, src, dev))
	e.must("device", "detach", "data")
	e.must("daemon", "stop")
	e.check()
}
