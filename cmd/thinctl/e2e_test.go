package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/thinpool/thinpool/daemon"
)

// buildThinctl builds the real binary into a temp dir.
func buildThinctl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "thinctl")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestEndToEndBinary runs the real binary: the demo script, then error
// cases, checking exit codes and that each error is one line on stderr.
func TestEndToEndBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildThinctl(t)
	dir := t.TempDir()
	demo := exec.Command("bash", "../../scripts/demo.sh")
	demo.Env = append(os.Environ(), "BIN="+bin, "DEMO_DIR="+dir)
	out, err := demo.CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{"Created pool", "Imported 256 MiB", "unchanged", "differ in", "is clean", "export.img == work.img"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	pool := filepath.Join(dir, "pool.img")
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"device", "inspect", "nope"}, exitNotFound, `thinctl: device "nope" not found`},
		{[]string{"device", "create", "x", "--size", "huge"}, exitInvalid, `thinctl: bad size "huge"`},
		{[]string{"device", "rm", "base"}, exitPrecondition, `thinctl: device "base" has 1 snapshots (base-v1); use -f`},
		{[]string{"--pool", filepath.Join(dir, "none.img"), "pool", "info"}, exitNotFound, "thinctl: pool " + filepath.Join(dir, "none.img") + " does not exist (create it with 'thinctl pool create')"},
		{[]string{"device", "create", "base", "--size", "1G"}, exitExists, `thinctl: device "base" already exists`},
		{[]string{"device", "frobnicate"}, exitInvalid, `thinctl: unknown command "frobnicate" for "thinctl device"`},
		{[]string{"device", "ls", "--frobnicate"}, exitInvalid, "thinctl: unknown flag: --frobnicate"},
		{[]string{"pool", "check"}, 0, ""},
	}
	for _, tc := range tests {
		cmd := exec.Command(bin, append([]string{"--pool", pool}, tc.args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("thinctl %v: exit %d stderr %q; want exit %d and %q", tc.args, code, stderr.String(), tc.code, tc.want)
		}
		if tc.code != 0 && strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("thinctl %v: error is not one line: %q", tc.args, stderr.String())
		}
	}
}

// TestNotRoot: run by a user other than root, the commands that would run
// the pool daemon refuse with one line and exit 9 (permission denied).
func TestNotRoot(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	if os.Geteuid() != 0 {
		t.Skip("runs the binary as nobody: needs root")
	}
	bin := buildThinctl(t)
	// nobody must reach the binary: open up the directories above it.
	for dir := filepath.Dir(bin); dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pool := filepath.Join(t.TempDir(), "pool.img")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"daemon", "run"}, "thinctl: the pool daemon must run as root (it mounts FUSE and attaches loop devices)\n"},
		{[]string{"daemon", "start"}, "thinctl: attaching devices needs root: the pool daemon mounts FUSE and attaches loop devices\n"},
	}
	for _, tc := range tests {
		cmd := exec.Command(bin, append([]string{"--pool", pool}, tc.args...)...)
		cmd.Env = append(os.Environ(), daemon.RunBaseEnv+"="+t.TempDir())
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("thinctl %v as nobody: %v", tc.args, err)
		}
		if ee.ExitCode() != exitPermission || stderr.String() != tc.want {
			t.Errorf("thinctl %v as nobody: exit %d, %q; want %d, %q", tc.args, ee.ExitCode(), stderr.String(), exitPermission, tc.want)
		}
	}
}
