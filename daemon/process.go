package daemon

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/thinpool/thinpool/blockdev"
	"github.com/thinpool/thinpool/errdefs"
)

// The daemon process as other processes see it: its pid file, socket, log
// and draining marker in the run directory, and, while Spawn waits for it,
// the file it reports a failed start in.

// LogFile is the daemon's log in a run directory.
func LogFile(runDir string) string { return filepath.Join(runDir, "daemon.log") }

// Answers reports whether a daemon accepts connections on the socket of
// the run directory.
func Answers(runDir string) bool {
	c, err := net.DialTimeout("unix", Socket(runDir), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// PID returns the pid of the run directory's daemon, if it runs and
// answers.
func PID(runDir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(runDir, "pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || syscall.Kill(pid, 0) != nil || !Answers(runDir) {
		return 0, false
	}
	return pid, true
}

// Stopping returns, while the run directory's daemon drains after a forced
// stop, what holds its lazily unmounted filesystems.
func Stopping(runDir string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(runDir, drainingFile))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

// AttachedLoops counts the loop devices whose backing file is in the FUSE
// mount of the run directory: the devices its daemon has attached.
// REF: https://docs.kernel.org/admin-guide/abi-stable-files.html (/sys/block/loopN/loop/backing_file)
func AttachedLoops(runDir string) int {
	dir := fuseDir(runDir) + "/"
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	n := 0
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), dir) {
			n++
		}
	}
	return n
}

// startErrorEnv names the environment variable through which Spawn asks
// the daemon it starts to leave the error it exits with in a file, the
// path it holds; see ReportStartError.
const startErrorEnv = "THINPOOL_START_ERROR_FILE"

// ReportStartError hands err, the error the daemon process is about to exit
// with before it serves, to the Spawn that started it, which returns it in
// a *StartError. It does nothing in a daemon that Spawn did not start (as
// systemd runs it), nor once Run listens: Run then drops the request, so
// that an error at shutdown is not taken for one at start.
func ReportStartError(err error) {
	if path := os.Getenv(startErrorEnv); path != "" && err != nil {
		_ = os.WriteFile(path, []byte(err.Error()), 0o600)
	}
}

// StartError is returned by Spawn when the daemon exits before it answers.
// It is of kind errdefs.ErrUnavailable.
type StartError struct {
	// Reason is the text of the error the daemon exited with, as it
	// reported it (ReportStartError); "" if it reported none (it crashed or
	// was killed).
	Reason string
	// ExitCode is the daemon process's exit code; -1 if a signal ended it.
	ExitCode int
	// Status is the process's end as os.ProcessState says it: "exit status
	// 2", "signal: killed".
	Status string
	// Log is the daemon's log file; "" if it went with the run directory.
	Log string
}

func (e *StartError) Error() string {
	switch {
	case e.Reason != "":
		return "the daemon exited at start: " + e.Reason
	case e.Log != "":
		return fmt.Sprintf("the daemon exited at start (%s) without saying why; see %s", e.Status, e.Log)
	}
	return fmt.Sprintf("the daemon exited at start (%s) without saying why", e.Status)
}

// Is makes a StartError match errdefs.ErrUnavailable.
func (e *StartError) Is(target error) bool { return target == errdefs.ErrUnavailable }

// Spawn runs argv (a command that runs the daemon in the foreground, as
// 'thinctl daemon run') in the background in a session of its own,
// logging to the run directory, and waits until the daemon answers. If it
// exits at start, Spawn returns a *StartError with the error the daemon
// reported (ReportStartError); if made is set (the caller made the run
// directory), the run directory goes then: a failed start leaves nothing
// behind.
func Spawn(runDir string, argv []string, made bool) error {
	logPath := LogFile(runDir)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	reportf, err := os.CreateTemp(runDir, "start-error-")
	if err != nil {
		return err
	}
	report := reportf.Name()
	reportf.Close()
	defer os.Remove(report)
	c := exec.Command(argv[0], argv[1:]...)
	c.Stdout, c.Stderr = logf, logf
	c.Env = append(os.Environ(), startErrorEnv+"="+report)
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		return fmt.Errorf("start daemon: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = c.Wait(); close(exited) }()
	deadline := time.After(20 * time.Second)
	for {
		if Answers(runDir) {
			return nil
		}
		select {
		case <-exited:
			// Another command may have started a daemon first: use it.
			for i := 0; i < 100; i++ {
				if Answers(runDir) {
					return nil
				}
				time.Sleep(50 * time.Millisecond)
			}
			reason, _ := os.ReadFile(report)
			err := &StartError{Reason: string(reason), ExitCode: c.ProcessState.ExitCode(), Status: c.ProcessState.String(), Log: logPath}
			if made && RemoveRunDir(runDir) == nil {
				err.Log = ""
			}
			return err
		case <-deadline:
			return reasonf(errdefs.ErrUnavailable, "the daemon did not answer within 20s (log: %s)", logPath)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ReapStuck frees a killed daemon that cannot exit: its main thread is a
// zombie while another of its threads waits, uninterruptibly, on I/O that
// only the daemon's own (dead) FUSE server could serve (an unmount's
// writeback, a last close's flush). Such a process keeps the pool lock,
// and its socket still accepts connections. Aborting that FUSE connection
// fails the I/O, the process exits, and the lock goes with it.
func ReapStuck(runDir string) {
	b, err := os.ReadFile(filepath.Join(runDir, "pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !stuckExiting(pid) {
		return
	}
	_ = blockdev.AbortMount(fuseDir(runDir))
	for i := 0; i < 200 && stuckExiting(pid); i++ {
		time.Sleep(50 * time.Millisecond)
	}
}

// stuckExiting reports whether process pid is exiting but cannot: its main
// thread is a zombie while other threads remain.
func stuckExiting(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	s := string(b)
	return strings.Contains(s, "State:\tZ") && !strings.Contains(s, "Threads:\t1\n")
}
