//go:build linux && integration

package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeInstall runs 'make install' into a temp PREFIX and checks that
// each piece is in place and usable: the binary runs, a man page per
// command, completion scripts that complete thinctl, and a systemd unit
// whose ExecStart is the installed binary (verified by systemd-analyze when
// it is there). 'make uninstall' then removes every file again.
func TestMakeInstall(t *testing.T) {
	requireTool(t, "make")
	prefix := t.TempDir()
	make := func(target string) {
		t.Helper()
		cmd := exec.Command("make", "-C", "..", target, "PREFIX="+prefix)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make %s: %v\n%s", target, err, out)
		}
	}
	make("install")

	bin := filepath.Join(prefix, "bin", "thinctl")
	if out, err := exec.Command(bin, "version").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "thinctl ") {
		t.Fatalf("%s version: %v, %q", bin, err, out)
	}
	for _, page := range []string{"thinctl.8", "thinctl-pool-create.8", "thinctl-daemon-run.8", "thinctl-container-create.8"} {
		b, err := os.ReadFile(filepath.Join(prefix, "share", "man", "man8", page))
		if err != nil || !strings.Contains(string(b), ".TH ") {
			t.Errorf("man page %s: %v (%d bytes, no .TH header?)", page, err, len(b))
		}
	}
	for _, c := range []struct{ path, want string }{
		{"share/bash-completion/completions/thinctl", "__start_thinctl"},
		{"share/zsh/site-functions/_thinctl", "#compdef thinctl"},
		{"share/fish/vendor_completions.d/thinctl.fish", "complete -c thinctl"},
	} {
		b, err := os.ReadFile(filepath.Join(prefix, c.path))
		if err != nil || !strings.Contains(string(b), c.want) {
			t.Errorf("%s: %v; want it to contain %q", c.path, err, c.want)
		}
	}
	unit := filepath.Join(prefix, "lib", "systemd", "system", "thinpool.service")
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	if want := "ExecStart=" + bin + " daemon run\n"; !strings.Contains(string(b), want) {
		t.Errorf("%s has no line %q:\n%s", unit, want, b)
	}
	if strings.Contains(string(b), "@") {
		t.Errorf("%s still has a placeholder:\n%s", unit, b)
	}
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		if out, err := exec.Command("systemd-analyze", "verify", "--man=no", unit).CombinedOutput(); err != nil {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
	}

	make("uninstall")
	var left []string
	filepath.Walk(prefix, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			left = append(left, path)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("make uninstall left %d files: %v", len(left), left)
	}
}
