//go:build linux && integration

package test

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/thinpool/thinpool/daemon"
	"github.com/thinpool/thinpool/thinpool"
)

// TestDaemonExitsAtStart: a daemon that cannot open its pool exits at
// start; the command that started it says why in one line, "the daemon
// exited at start: " and the daemon's own error whole, exits with the code
// of that error's kind, and leaves no run directory behind.
func TestDaemonExitsAtStart(t *testing.T) {
	failsAtStart := func(e *env, code int, want string, args ...string) {
		t.Helper()
		_, errOut, got := e.run(time.Minute, args...)
		if got != code || errOut != want {
			t.Fatalf("thinctl %s: exit %d, %q; want exit %d, %q", strings.Join(args, " "), got, errOut, code, want)
		}
		if pid := e.daemonPID(); pid > 0 {
			t.Fatalf("thinctl %s: a daemon runs (pid %d)", strings.Join(args, " "), pid)
		}
		if rd := daemon.RunDir(e.pool); exists(rd) {
			entries, _ := os.ReadDir(rd)
			t.Fatalf("thinctl %s: a failed start left its run directory %s: %v", strings.Join(args, " "), rd, entries)
		}
	}

	t.Run("corrupt", func(t *testing.T) {
		e := newEnv(t, "1G")
		f, err := os.OpenFile(e.pool, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.WriteAt(bytes.Repeat([]byte{0xff}, 8192), 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		// The daemon's error, as 'pool info' words it without a daemon.
		_, errOut, code := e.run(time.Minute, "pool", "info")
		reason, ok := strings.CutPrefix(errOut, "thinctl: ")
		if code != 8 || !ok || !strings.HasPrefix(reason, "pool "+e.pool+" is corrupt: ") {
			t.Fatalf("pool info on the corrupt pool: exit %d, %q", code, errOut)
		}
		failsAtStart(e, 8, "thinctl: the daemon exited at start: "+reason, "daemon", "start")
	})

	t.Run("locked", func(t *testing.T) {
		e := newEnv(t, "1G")
		p, err := thinpool.Open(e.pool) // holds the pool's lock, as another process would
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		want := fmt.Sprintf("thinctl: the daemon exited at start: pool %s is in use by pid %d\n", e.pool, os.Getpid())
		failsAtStart(e, 5, want, "daemon", "start")
		// A command that needs the daemon starts one, and says the same.
		failsAtStart(e, 5, want, "device", "attach", "web")
	})
}
