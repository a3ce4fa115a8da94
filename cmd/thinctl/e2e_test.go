package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
