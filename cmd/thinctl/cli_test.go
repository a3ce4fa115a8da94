package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/thinpool/thinpool/daemon"
	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/thinpool"
)

// thinctl runs the CLI in-process on pool and returns stdout, stderr and the
// exit code.
func thinctl(t *testing.T, pool string, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(append([]string{"--pool", pool}, args...), strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), code
}

// mustRun runs thinctl and fails the test unless it exits 0.
func mustRun(t *testing.T, pool string, args ...string) string {
	t.Helper()
	out, errOut, code := thinctl(t, pool, args...)
	if code != 0 {
		t.Fatalf("thinctl %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// newPool creates a pool file with the CLI and returns its path.
func newPool(t *testing.T, size string) string {
	t.Helper()
	pool := filepath.Join(t.TempDir(), "pool.img")
	mustRun(t, pool, "pool", "create", "--size", size)
	return pool
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		bad  bool
	}{
		{"4096", 4096 << 20, false}, // a bare number is MiB, as lvcreate -L
		{"100", 100 << 20, false},
		{"0.5", 512 << 10, false},
		{"4096B", 4096, false},
		{"8S", 4096, false},
		{"8s", 4096, false},
		{"64K", 64 << 10, false},
		{"64k", 64 << 10, false},
		{"512M", 512 << 20, false},
		{"10G", 10 << 30, false},
		{"10GiB", 10 << 30, false},
		{"10GB", 10 << 30, false},
		{"10 G", 10 << 30, false},
		{"1.5T", 3 << 39, false},
		{"100B", 100, false},
		{"", 0, true},
		{"G", 0, true},
		{"-1G", 0, true},
		{"10Q", 0, true},
		{"ten", 0, true},
		{"1e30G", 0, true},
		{"+1G", 0, true}, // relative only where a size can grow
		{"1..5G", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseSize(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("parseSize(%q) = %d, want error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestPoolCreateInfoCheck(t *testing.T) {
	pool := newPool(t, "2G")
	out := mustRun(t, pool, "pool", "info")
	for _, want := range []string{"Data space total:", "2.0 GiB", "Block size:", "64 KiB", "Thin devices:", "Host space used:"} {
		if !strings.Contains(out, want) {
			t.Errorf("pool info lacks %q:\n%s", want, out)
		}
	}
	var info poolInfo
	if err := json.Unmarshal([]byte(mustRun(t, pool, "--json", "pool", "info")), &info); err != nil {
		t.Fatal(err)
	}
	if info.DataTotal != 2<<30 || info.BlockSize != 64<<10 || info.Pool != pool || info.Warnings == nil {
		t.Fatalf("pool info json %+v", info)
	}
	if out := mustRun(t, pool, "pool", "check"); !strings.Contains(out, "clean") {
		t.Fatalf("pool check: %s", out)
	}
	var cr checkResult
	if err := json.Unmarshal([]byte(mustRun(t, pool, "--json", "pool", "check")), &cr); err != nil || !cr.Clean {
		t.Fatalf("check json %+v %v", cr, err)
	}
	mustRun(t, pool, "pool", "grow", "--size", "4G")
	mustRun(t, pool, "pool", "grow", "--metadata-size", "8M")
	if err := json.Unmarshal([]byte(mustRun(t, pool, "--json", "pool", "info")), &info); err != nil {
		t.Fatal(err)
	}
	if info.DataTotal != 4<<30 || info.MetadataArea != 8<<20 {
		t.Fatalf("after grow %+v", info)
	}
}

func TestPoolInfoWarning(t *testing.T) {
	pool := newPool(t, "1M") // 16 blocks
	p, err := thinpool.Open(pool)
	if err != nil {
		t.Fatal(err)
	}
	d, err := p.CreateThin("a", 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(make([]byte, 15*64<<10), 0); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if out := mustRun(t, pool, "pool", "info"); !strings.Contains(out, "WARNING: data space is 94% used") {
		t.Fatalf("no warning:\n%s", out)
	}
}

// TestErrors walks the CLI's error cases: each fails with its message and
// the exit code of its kind, and changes nothing.
func TestErrors(t *testing.T) {
	pool := newPool(t, "1G")
	mustRun(t, pool, "device", "create", "web", "--size", "100M")
	mustRun(t, pool, "snapshot", "create", "web", "web-ro", "--readonly")
	missing := filepath.Join(t.TempDir(), "none.img")
	tests := []struct {
		name string
		pool string
		args []string
		want string
		code int
	}{
		{"pool missing", missing, []string{"device", "ls"}, "does not exist", exitNotFound},
		{"pool exists", pool, []string{"pool", "create"}, "already exists", exitExists},
		{"pool bad size", missing, []string{"pool", "create", "--size", "lots"}, `bad size "lots"`, exitInvalid},
		{"pool bad block size", missing, []string{"pool", "create", "--block-size", "48K"}, "block size", exitInvalid},
		{"pool too small", missing, []string{"pool", "create", "--size", "4K"}, "smaller than one block", exitInvalid},
		{"grow nothing", pool, []string{"pool", "grow"}, "needs --size or --metadata-size", exitInvalid},
		{"grow smaller", pool, []string{"pool", "grow", "--size", "512M"}, "not larger", exitInvalid},
		{"create no size", pool, []string{"device", "create", "x"}, "needs --size", exitInvalid},
		{"create zero size", pool, []string{"device", "create", "x", "--size", "0"}, "more than 0", exitInvalid},
		{"create bad size", pool, []string{"device", "create", "x", "--size", "1X"}, "bad size", exitInvalid},
		{"create slash", pool, []string{"device", "create", "a/b", "--size", "1G"}, "contains '/'", exitInvalid},
		{"create empty name", pool, []string{"device", "create", "", "--size", "1G"}, "empty name", exitInvalid},
		{"create duplicate", pool, []string{"device", "create", "web", "--size", "1G"}, `device "web" already exists`, exitExists},
		{"create bad label", pool, []string{"device", "create", "x", "--size", "1G", "--label", "novalue"}, "bad label", exitInvalid},
		{"inspect missing", pool, []string{"device", "inspect", "nope"}, `device "nope" not found`, exitNotFound},
		{"rm missing", pool, []string{"device", "rm", "nope"}, `device "nope" not found`, exitNotFound},
		{"rm with snapshots", pool, []string{"device", "rm", "web"}, "has 1 snapshots (web-ro); use -f", exitPrecondition},
		{"resize missing", pool, []string{"device", "resize", "nope", "--size", "1G"}, `device "nope" not found`, exitNotFound},
		{"resize shrink", pool, []string{"device", "resize", "web", "--size", "10M"}, "shrinking", exitInvalid},
		{"resize ro", pool, []string{"device", "resize", "web-ro", "--size", "1G"}, "read-only", exitPrecondition},
		{"rename missing", pool, []string{"device", "rename", "nope", "x"}, `device "nope" not found`, exitNotFound},
		{"rename onto existing", pool, []string{"device", "rename", "web", "web-ro"}, `device "web-ro" already exists`, exitExists},
		{"rename bad", pool, []string{"device", "rename", "web", "."}, "reserved", exitInvalid},
		{"snapshot missing origin", pool, []string{"snapshot", "create", "nope", "s"}, `device "nope" not found`, exitNotFound},
		{"snapshot duplicate", pool, []string{"snapshot", "create", "web", "web-ro"}, `device "web-ro" already exists`, exitExists},
		{"snapshot bad name", pool, []string{"snapshot", "create", "web", "a b"}, "space", exitInvalid},
		{"unknown command", pool, []string{"frobnicate"}, "unknown command", exitInvalid},
		{"extra args", pool, []string{"device", "ls", "x"}, "unknown command", exitInvalid},
	}
	before := mustRun(t, pool, "--json", "device", "ls")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := thinctl(t, tc.pool, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; out %q, stderr %q", code, tc.code, out, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Fatalf("stderr %q, want it to contain %q", errOut, tc.want)
			}
			if lines := strings.Count(strings.TrimSpace(errOut), "\n"); lines > 0 && !strings.Contains(tc.name, "command") && tc.name != "extra args" {
				t.Fatalf("error is %d lines: %q", lines+1, errOut)
			}
		})
	}
	if after := mustRun(t, pool, "--json", "device", "ls"); after != before {
		t.Fatalf("failed commands changed the pool:\n%s\n%s", before, after)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("failed commands created %s", missing)
	}
}

func TestDeviceLifecycle(t *testing.T) {
	pool := newPool(t, "1G")
	mustRun(t, pool, "device", "create", "web", "--size", "1.5G", "--label", "role=data")
	mustRun(t, pool, "snapshot", "create", "web", "s1")
	mustRun(t, pool, "snapshot", "create", "s1", "s2", "--readonly")
	out := mustRun(t, pool, "device", "ls")
	for _, want := range []string{"NAME", "web", "1.5 GiB", "s1", "s2", "ro"} {
		if !strings.Contains(out, want) {
			t.Fatalf("device ls lacks %q:\n%s", want, out)
		}
	}
	var devs []deviceJSON
	if err := json.Unmarshal([]byte(mustRun(t, pool, "--json", "device", "ls")), &devs); err != nil {
		t.Fatal(err)
	}
	if len(devs) != 3 || devs[0].Labels["role"] != "data" || devs[2].Origin != "s1" || !devs[2].ReadOnly ||
		strings.Join(devs[2].Chain, ",") != "s1,web" {
		t.Fatalf("device ls json %+v", devs)
	}
	if out := mustRun(t, pool, "snapshot", "ls"); !strings.Contains(out, "s2 <- s1 <- web") {
		t.Fatalf("snapshot ls:\n%s", out)
	}
	var d deviceJSON
	if err := json.Unmarshal([]byte(mustRun(t, pool, "device", "inspect", "s1")), &d); err != nil || d.Origin != "web" {
		t.Fatalf("inspect %+v %v", d, err)
	}
	mustRun(t, pool, "device", "resize", "web", "--size", "2G")
	mustRun(t, pool, "device", "rename", "web", "www")
	mustRun(t, pool, "device", "rm", "-f", "www")
	if out := mustRun(t, pool, "snapshot", "ls"); !strings.Contains(out, "s1 <- (deleted #1)") {
		t.Fatalf("snapshot ls after origin removal:\n%s", out)
	}
	if out := mustRun(t, pool, "-q", "device", "ls"); out != "s1\ns2\n" {
		t.Fatalf("quiet ls %q", out)
	}
	mustRun(t, pool, "device", "rm", "s2", "s1")
	if out := mustRun(t, pool, "pool", "check"); !strings.Contains(out, "clean: 0 devices") {
		t.Fatalf("check: %s", out)
	}
}

func TestCorruptPool(t *testing.T) {
	pool := newPool(t, "1G")
	f, err := os.OpenFile(pool, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(bytes.Repeat([]byte{0xff}, 8192), 0)
	f.Close()
	_, errOut, code := thinctl(t, pool, "pool", "check")
	if code != exitCorrupt || !strings.Contains(errOut, "pool "+pool+" is corrupt: ") {
		t.Fatalf("check of corrupt pool: exit %d %q", code, errOut)
	}
}

func TestVersionAndCompletion(t *testing.T) {
	if out := mustRun(t, "x", "version"); !strings.Contains(out, fmt.Sprintf("pool format v%d", thinpool.FormatVersion)) {
		t.Fatalf("version %q", out)
	}
	if out := mustRun(t, "x", "completion", "bash"); !strings.Contains(out, "bash completion") {
		t.Fatalf("completion: %.100s", out)
	}
}

// TestListingOffline: the read-only image, container and volume commands
// answer from the pool file when no daemon runs; the ones that change
// something still need the daemon.
func TestListingOffline(t *testing.T) {
	pool := newPool(t, "1G")
	for _, args := range [][]string{{"image", "ls"}, {"container", "ls"}, {"volume", "ls"}} {
		out := mustRun(t, pool, args...)
		if !strings.Contains(out, "NAME") && !strings.Contains(out, "IMAGE") {
			t.Errorf("%v: %q", args, out)
		}
		if out := mustRun(t, pool, append([]string{"--json"}, args...)...); strings.TrimSpace(out) != "[]" {
			t.Errorf("--json %v: %q", args, out)
		}
	}
	if _, errOut, _ := thinctl(t, pool, "volume", "inspect", "nosuch"); !strings.Contains(errOut, `volume "nosuch" not found`) {
		t.Errorf("volume inspect nosuch: %q", errOut)
	}
	if _, errOut, code := thinctl(t, pool, "volume", "prune", "-f"); code != exitUnavailable || !strings.Contains(errOut, "needs the pool daemon") {
		t.Errorf("volume prune in-process: exit %d: %q", code, errOut)
	}
}

// TestRunDirFlag: --run-dir, or THINPOOL_RUN_DIR, says where the daemon's
// run directory is; the flag wins over the environment.
func TestRunDirFlag(t *testing.T) {
	pool := newPool(t, "1G")
	dir := t.TempDir()
	t.Setenv(daemon.RunBaseEnv, filepath.Join(dir, "env")) // restored after the test, flag or not
	status := func(args ...string) (st struct {
		RunDir string `json:"runDir"`
		Socket string `json:"socket"`
	}) {
		t.Helper()
		out := mustRun(t, pool, append(args, "--json", "daemon", "status")...)
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return st
	}
	if st := status(); filepath.Dir(st.RunDir) != filepath.Join(dir, "env") || filepath.Dir(st.Socket) != st.RunDir {
		t.Fatalf("with %s: %+v", daemon.RunBaseEnv, st)
	}
	if st := status("--run-dir", filepath.Join(dir, "flag")); filepath.Dir(st.RunDir) != filepath.Join(dir, "flag") {
		t.Fatalf("with --run-dir: %+v", st)
	}
}

// TestExitCodes: the kinds TestErrors does not reach each exit with their
// code and one line: a pool locked by another open, a full pool, and
// (through exitCode, as they need a non-root user or a daemon) permission
// and an unreachable daemon.
func TestExitCodes(t *testing.T) {
	pool := newPool(t, "64M")
	p, err := thinpool.Open(pool)
	if err != nil {
		t.Fatal(err)
	}
	_, errOut, code := thinctl(t, pool, "device", "ls")
	p.Close()
	if code != exitInUse || !strings.HasPrefix(errOut, "thinctl: pool "+pool+" is in use") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("device ls on a locked pool: exit %d, %q", code, errOut)
	}

	full := filepath.Join(t.TempDir(), "pool.img")
	mustRun(t, full, "pool", "create", "--size", "512K")
	var out, stderr bytes.Buffer
	code = run([]string{"--pool", full, "device", "import", "web", "-", "--size", "4M"}, bytes.NewReader(bytes.Repeat([]byte{1}, 4<<20)), &out, &stderr)
	if msg := stderr.String(); code != exitNoSpace || !strings.Contains(msg, "no free data blocks") || strings.Count(msg, "\n") != 1 || strings.Count(msg, "thinpool: ") > 1 {
		t.Errorf("import into a full pool: exit %d, %q", code, msg)
	}

	for _, tc := range []struct {
		err  error
		code int
	}{
		{errdefs.Newf(errdefs.ErrPermission, "pool %s: permission denied", pool), exitPermission},
		{&fs.PathError{Op: "open", Path: "/dev/loop0", Err: syscall.EACCES}, exitPermission},
		{fmt.Errorf("pool daemon for %s: %w", pool, daemon.ErrNoDaemon), exitUnavailable},
		{&daemon.StartError{Reason: "boom", ExitCode: exitFailure}, exitUnavailable},
		{errdefs.Newf(errdefs.ErrCorrupt, "%w", &daemon.StartError{Reason: "pool x is corrupt", ExitCode: exitCorrupt}), exitCorrupt},
		{errdefs.Newf(errdefs.ErrPermission, "the pool daemon must run as root"), exitPermission},
		{&fs.PathError{Op: "open", Path: "x.tar", Err: syscall.ENOENT}, exitNotFound},
		{fmt.Errorf("write: %w", thinpool.ErrMetadataFull), exitNoSpace},
		{&thinpool.CorruptionError{Off: -1, What: "x"}, exitCorrupt},
		{&daemon.BusyError{}, exitInUse},
		{&exitError{code: 130, msg: "interrupted: nothing imported"}, 130},
		{errors.New("boom"), exitFailure},
	} {
		if got := exitCode(tc.err); got != tc.code {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.code)
		}
	}
	// exitKind reads back the kind of a thinctl process's exit code (a
	// daemon that exits at start).
	for kind, code := range exitCodes {
		if got := exitKind(code); got != kind {
			t.Errorf("exitKind(%d) = %v, want %v", code, got, kind)
		}
	}
	for _, code := range []int{0, exitFailure, 130, 143, -1} {
		if got := exitKind(code); got != nil {
			t.Errorf("exitKind(%d) = %v, want none", code, got)
		}
	}
}

// TestDaemonUnavailable: a command that needs the pool daemon and cannot
// reach it exits 10 (unavailable) with one line saying so: in-process
// calls, which have no files to hand a daemon, and the manager and host of
// an app that runs outside a daemon.
func TestDaemonUnavailable(t *testing.T) {
	pool := newPool(t, "1G")
	t.Setenv(daemon.RunBaseEnv, t.TempDir())
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"device", "attach", "web"}, "thinctl: thinctl device attach needs the pool daemon, which an in-process call cannot reach\n"},
		{[]string{"device", "mount", "web", t.TempDir()}, "thinctl: thinctl device mount needs the pool daemon, which an in-process call cannot reach\n"},
		{[]string{"volume", "create", "v"}, "thinctl: thinctl volume create needs the pool daemon, which an in-process call cannot reach\n"},
	}
	for _, tc := range tests {
		if _, errOut, code := thinctl(t, pool, tc.args...); code != exitUnavailable || errOut != tc.want {
			t.Errorf("thinctl %s: exit %d, %q; want %d, %q", strings.Join(tc.args, " "), code, errOut, exitUnavailable, tc.want)
		}
	}

	// 'daemon stop' with a daemon that runs (a pid file naming a live
	// process, a socket that answers) but no files to forward to it.
	abs, err := filepath.Abs(pool)
	if err != nil {
		t.Fatal(err)
	}
	runDir := daemon.RunDir(abs)
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(runDir, "pid"), []byte(fmt.Sprintln(os.Getpid())), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := daemon.Listen(daemon.Socket(runDir), func(context.Context, daemon.Request, *os.File, *os.File, *os.File) int { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	want := "thinctl: daemon stop needs the pool daemon, which an in-process call cannot reach\n"
	if _, errOut, code := thinctl(t, pool, "daemon", "stop"); code != exitUnavailable || errOut != want {
		t.Errorf("daemon stop: exit %d, %q; want %d, %q", code, errOut, exitUnavailable, want)
	}

	a := &app{poolPath: pool}
	if _, err := a.manager(); exitCode(err) != exitUnavailable {
		t.Errorf("manager outside the daemon: %v, exit %d", err, exitCode(err))
	}
	if _, err := a.host(); exitCode(err) != exitUnavailable {
		t.Errorf("host outside the daemon: %v, exit %d", err, exitCode(err))
	}
}
