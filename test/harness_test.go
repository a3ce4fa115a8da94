//go:build linux && integration

package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/thinpool/thinpool/daemon"
)

// thinctlBin is the binary the tests drive, built once by TestMain.
var thinctlBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "thinctl-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	thinctlBin = filepath.Join(dir, "thinctl")
	if out, err := exec.Command("go", "build", "-o", thinctlBin, "../cmd/thinctl").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build thinctl: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireRoot skips unless the test can attach loop devices and mount FUSE.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("root integration test: must run as root (loop devices, FUSE, mount)")
	}
	for _, dev := range []string{"/dev/fuse", "/dev/loop-control"} {
		if _, err := os.Stat(dev); err != nil {
			t.Skipf("root integration test: %s is missing", dev)
		}
	}
}

// requireTool skips unless the command is installed.
func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s is not installed (apt-get install it; .ci/run does)", name)
	}
}

// env is one pool with its own run directory, so tests never share a daemon.
type env struct {
	t      *testing.T
	dir    string
	pool   string
	runDir string
}

// newEnv creates a pool of size; cleanup stops the daemon, kills it if it
// will not stop, and removes anything left attached or mounted.
func newEnv(t *testing.T, size string) *env {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	e := &env{t: t, dir: dir, pool: filepath.Join(dir, "pool.img"), runDir: filepath.Join(dir, "run")}
	t.Setenv("THINPOOL_RUN_DIR", e.runDir)
	t.Cleanup(e.cleanup)
	e.must("pool", "create", "--size", size)
	return e
}

func (e *env) cleanup() {
	if e.t.Failed() {
		if b, err := os.ReadFile(filepath.Join(daemon.RunDir(e.pool), "daemon.log")); err == nil {
			e.t.Logf("daemon log:\n%s", b)
		}
	}
	_, _, _ = e.run(60*time.Second, "daemon", "stop")
	if pid := e.daemonPID(); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		time.Sleep(200 * time.Millisecond)
	}
	rd := daemon.RunDir(e.pool)
	if err := daemon.Cleanup(rd, e.t.Logf); err != nil {
		e.t.Errorf("cleanup %s: %v", rd, err)
	}
}

// run runs thinctl on the env's pool with a timeout.
func (e *env) run(timeout time.Duration, args ...string) (string, string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, thinctlBin, append([]string{"--pool", e.pool}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Env = append(os.Environ(), "THINPOOL_RUN_DIR="+e.runDir)
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("thinctl %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		e.t.Fatalf("thinctl %s: timed out after %v", strings.Join(args, " "), timeout)
	}
	return out.String(), errOut.String(), code
}

// must runs thinctl and fails the test unless it exits 0.
func (e *env) must(args ...string) string {
	e.t.Helper()
	out, errOut, code := e.run(3*time.Minute, args...)
	if code != 0 {
		e.t.Fatalf("thinctl %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// fails runs thinctl, requires a non-zero exit and returns stderr.
func (e *env) fails(args ...string) string {
	e.t.Helper()
	_, errOut, code := e.run(3*time.Minute, args...)
	if code == 0 {
		e.t.Fatalf("thinctl %s: exit 0, want failure", strings.Join(args, " "))
	}
	return errOut
}

func (e *env) daemonPID() int {
	b, err := os.ReadFile(filepath.Join(daemon.RunDir(e.pool), "pid"))
	if err != nil {
		return 0
	}
	var pid int
	fmt.Sscanf(string(b), "%d", &pid)
	if pid > 0 && syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

// sh runs a shell command with a timeout and returns its combined output.
func sh(t *testing.T, timeout time.Duration, script string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "bash", "-c", script).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%q timed out after %v", script, timeout)
	}
	return string(out), err
}

func mustSh(t *testing.T, timeout time.Duration, script string) string {
	t.Helper()
	out, err := sh(t, timeout, script)
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return out
}
