package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/thinpool/thinpool/errdefs"
)

// childEnv makes the test binary, run by Spawn, a daemon that fails at
// start: "CODE" exits with CODE and reports nothing, "CODE:REASON" reports
// REASON (ReportStartError) first.
const childEnv = "DAEMON_TEST_START_CHILD"

func TestMain(m *testing.M) {
	if spec, ok := os.LookupEnv(childEnv); ok {
		code, reason, hasReason := strings.Cut(spec, ":")
		if hasReason {
			ReportStartError(errors.New(reason))
		}
		n, _ := strconv.Atoi(code)
		os.Exit(n)
	}
	os.Exit(m.Run())
}

// TestSpawnStartError: a daemon that exits at start hands Spawn the error
// it exits with, whole, and its exit code; one that says nothing is
// reported with how it ended. Either is unavailable, and a run directory
// Spawn's caller made goes.
func TestSpawnStartError(t *testing.T) {
	tests := []struct {
		name  string
		child string
		made  bool
		want  StartError
		msg   string
	}{
		{"reported", "8:pool /x is corrupt: thinctl: bad magic", true,
			StartError{Reason: "pool /x is corrupt: thinctl: bad magic", ExitCode: 8, Status: "exit status 8"},
			"the daemon exited at start: pool /x is corrupt: thinctl: bad magic"},
		{"silent", "2", false,
			StartError{ExitCode: 2, Status: "exit status 2", Log: "LOG"},
			"the daemon exited at start (exit status 2) without saying why; see LOG"},
		{"silent, made", "2", true,
			StartError{ExitCode: 2, Status: "exit status 2"},
			"the daemon exited at start (exit status 2) without saying why"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			runDir := filepath.Join(t.TempDir(), "run")
			if err := os.Mkdir(runDir, 0o700); err != nil {
				t.Fatal(err)
			}
			t.Setenv(childEnv, tc.child)
			err := Spawn(runDir, []string{os.Args[0], "-test.run=^$"}, tc.made)
			var got *StartError
			if !errors.As(err, &got) {
				t.Fatalf("Spawn: %v, want a *StartError", err)
			}
			want, msg := tc.want, tc.msg
			if want.Log == "LOG" {
				want.Log = LogFile(runDir)
				msg = strings.Replace(msg, "LOG", want.Log, 1)
			}
			if *got != want || err.Error() != msg {
				t.Fatalf("Spawn: %+v %q, want %+v %q", *got, err, want, msg)
			}
			if errdefs.Kind(err) != errdefs.ErrUnavailable {
				t.Fatalf("kind %v, want unavailable", errdefs.Kind(err))
			}
			left, _ := filepath.Glob(filepath.Join(runDir, "*"))
			switch {
			case tc.made && left != nil:
				t.Fatalf("the run directory Spawn's caller made is still there: %v", left)
			case !tc.made && fmt.Sprint(left) != fmt.Sprint([]string{LogFile(runDir)}):
				t.Fatalf("the run directory holds %v, want only the log", left)
			}
			if _, err := os.Stat(runDir); tc.made != errors.Is(err, os.ErrNotExist) {
				t.Fatalf("run directory after a failed start (made %v): %v", tc.made, err)
			}
		})
	}
}
