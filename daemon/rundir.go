package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"

	"github.com/thinpool/thinpool/blockdev"
	"github.com/thinpool/thinpool/volumes"
)

// DefaultRunBase is where daemons keep their run directories; the
// RunBaseEnv environment variable (thinctl's --run-dir) overrides it.
const DefaultRunBase = "/run/thinpool"

// RunBaseEnv names the environment variable that overrides DefaultRunBase,
// so that tests and independent daemons never share a directory. A daemon
// that thinctl starts inherits it.
const RunBaseEnv = "THINPOOL_RUN_DIR"

// RunBase is the directory that holds the daemons' run directories.
func RunBase() string {
	if base := os.Getenv(RunBaseEnv); base != "" {
		return base
	}
	if base := os.Getenv("THINPOOL_RUNDIR"); base != "" { // its name before --run-dir
		return base
	}
	return DefaultRunBase
}

// RunDir is the run directory of the daemon that owns the pool at path:
// a directory under RunBase named after a hash of the pool's absolute path,
// holding the socket, the FUSE mount, the pid file and the log.
func RunDir(poolPath string) string {
	base := RunBase()
	abs, err := filepath.Abs(poolPath)
	if err != nil {
		abs = poolPath
	}
	h := sha256.Sum256([]byte(abs))
	return filepath.Join(base, hex.EncodeToString(h[:8]))
}

// RemoveRunDir removes a run directory that its daemon left cleanly (log,
// pid file, socket, empty directories). It refuses, and removes nothing,
// while anything is mounted below it.
func RemoveRunDir(runDir string) error {
	if below := blockdev.MountsUnder(runDir); len(below) > 0 {
		return reasonf(volumes.ErrBusy, "not removing %s: %s is mounted", runDir, below[0])
	}
	return os.RemoveAll(runDir)
}

// Socket is the daemon socket in a run directory.
func Socket(runDir string) string { return filepath.Join(runDir, "sock") }
