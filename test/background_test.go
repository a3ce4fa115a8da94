//go:build linux && integration

package test

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// background is a shell script running while the test goes on.
type background struct {
	t    *testing.T
	cmd  *exec.Cmd
	done chan error
}

// startBackground runs script in its own process group; cleanup kills the
// group if it is still running.
func startBackground(t *testing.T, script string) *background {
	t.Helper()
	cmd := exec.Command("bash", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &background{t: t, cmd: cmd, done: make(chan error, 1)}
	go func() { b.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-b.done:
		case <-time.After(10 * time.Second):
		}
	})
	return b
}

// wait waits for the script to end, killing it after timeout.
func (b *background) wait(timeout time.Duration) {
	select {
	case <-b.done:
	case <-time.After(timeout):
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-b.done
	}
	b.done <- nil // for cleanup
}
