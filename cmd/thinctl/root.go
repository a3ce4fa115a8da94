package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/daemon"
	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/thinpool"
)

// DefaultPool is the pool file used when neither --pool nor THINPOOL is set.
const DefaultPool = "/var/lib/thinpool/pool.img"

// app is one invocation of thinctl: its streams and global flags.
type app struct {
	in       io.Reader
	out, err io.Writer
	poolPath string
	json     bool
	quiet    bool
	runBase  string // --run-dir

	// rawArgs are the arguments as given, for forwarding to the daemon.
	rawArgs []string
	// daemon is set when this invocation runs inside the pool daemon;
	// cwd is then the client's working directory, for relative paths.
	daemon *daemon.Daemon
	cwd    string
	// offline is set for a read-only command run with no daemon: manager
	// then reads offlinePool, which execute closes.
	offline     bool
	offlinePool *thinpool.Pool
}

// run executes thinctl with args and returns the exit code. Errors are
// printed as one line on stderr.
func run(args []string, in io.Reader, out, errOut io.Writer) int {
	a := &app{in: in, out: out, err: errOut, rawArgs: args}
	root := a.rootCmd()
	root.SetArgs(args)
	return a.execute(context.Background(), root)
}

// execute runs the command tree with ctx and turns its error into an exit
// code and one line on stderr.
func (a *app) execute(ctx context.Context, root *cobra.Command) int {
	root.SetIn(a.in)
	root.SetOut(a.out)
	root.SetErr(a.err)
	err := root.ExecuteContext(ctx)
	if a.offlinePool != nil {
		err = errors.Join(err, a.offlinePool.Close())
		a.offlinePool = nil
	}
	if err == nil {
		return 0
	}
	var ex *exitError
	if errors.As(err, &ex) {
		if ex.msg != "" {
			fmt.Fprintf(a.err, "thinctl: %s\n", ex.msg)
		}
		return ex.code
	}
	fmt.Fprintf(a.err, "thinctl: %s\n", err)
	return exitCode(err)
}

// abs resolves a path given on the command line against the caller's
// working directory (which differs from ours inside the daemon).
func (a *app) abs(path string) string {
	if path == "-" || path == "" || filepath.IsAbs(path) || a.cwd == "" {
		return path
	}
	return filepath.Join(a.cwd, path)
}

// exitError ends a command with a given exit code and an optional message.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "thinctl",
		Short: "Manage thin pools, thin devices and snapshots",
		Long: `thinctl manages a thinpool: one sparse pool file holding thin devices
(a block is allocated on first write), snapshots that share blocks and copy a
64 KiB block on the first write to it, and crash-safe metadata.

The pool is --pool, or $THINPOOL, or ` + DefaultPool + `.
Sizes take binary units as LVM does: 10G = 10 GiB, 512M, 64K, 1.5T, 100B
(bytes), 8S (512-byte sectors). A bare number is MiB, as lvcreate -L takes
it (--size 100 is 100 MiB); --block-size takes a bare number in KiB, as
lvcreate --chunksize, and --data-offset in bytes, as losetup --offset.
Growing takes +SIZE as lvextend -L +1G does: 'pool grow --size +10G',
'device resize web --size +1G'.
` + exitHelp,
		SilenceUsage: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if a.runBase != "" {
				// Through the environment, so that a daemon this command
				// starts inherits it.
				abs, err := filepath.Abs(a.runBase)
				if err != nil {
					return err
				}
				os.Setenv(daemon.RunBaseEnv, abs)
			}
			return a.forward(cmd, args)
		},
		SilenceErrors:     true,
		Version:           version,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
	}
	def := os.Getenv("THINPOOL")
	if def == "" {
		def = DefaultPool
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.poolPath, "pool", def, "pool file (env THINPOOL)")
	pf.BoolVar(&a.json, "json", false, "print JSON instead of tables")
	pf.BoolVarP(&a.quiet, "quiet", "q", false, "print only what scripts need; no progress bars")
	pf.StringVar(&a.runBase, "run-dir", "", "where pool daemons keep their sockets, FUSE mounts, pid and log files (env "+daemon.RunBaseEnv+"; default "+daemon.DefaultRunBase+")")
	root.AddCommand(a.newPoolCmd(), a.newDeviceCmd(), a.newSnapshotCmd(), a.newVersionCmd(), a.newDaemonCmd())
	root.AddCommand(a.newImageCmd(), a.newContainerCmd(), a.newVolumeCmd(), a.newInfoCmd())
	root.AddCommand(a.newBenchCmd(), a.newDocsCmd())
	// Made now, not at Execute, so that requireSubcommand sees it; it keeps
	// the output stream it is made with.
	root.SetIn(a.in)
	root.SetOut(a.out)
	root.SetErr(a.err)
	root.InitDefaultCompletionCmd()
	requireSubcommand(root)
	markUsageErrors(root)
	return root
}

// requireSubcommand makes every command that only groups others (pool,
// device, image...) print its help when called alone and fail on an
// unknown subcommand: cobra would otherwise print the help and exit 0 for
// 'thinctl image frobnicate'.
func requireSubcommand(cmd *cobra.Command) {
	if cmd.HasSubCommands() && !cmd.Runnable() {
		cmd.Args = cobra.NoArgs
		cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
	for _, c := range cmd.Commands() {
		requireSubcommand(c)
	}
}

// withPool opens the pool, runs fn, and closes the pool.
func (a *app) withPool(fn func(p *thinpool.Pool) error) error {
	if a.daemon != nil {
		return fn(a.daemon.Pool())
	}
	p, err := openPool(a.poolPath)
	if err != nil {
		return err
	}
	err = fn(p)
	return errors.Join(err, p.Close())
}

// openPool opens the pool file at path. thinpool.Open words its errors
// with the path (`pool /x does not exist`, `pool /x is in use by pid 7`,
// `pool /x is corrupt: …`); hintPool adds what to do about them.
func openPool(path string) (*thinpool.Pool, error) {
	p, err := thinpool.Open(path)
	return p, hintPool(err)
}

// hintPool adds to an error about the pool file what the user can do about
// it, after the error's own text.
func hintPool(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w (create it with 'thinctl pool create')", err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w (run as root?)", err)
	}
	return err
}

// statPool fails, as opening it would, if the pool file at path is missing
// or cannot be reached.
func statPool(path string) error {
	_, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		err = errdefs.Wrapf(err, errdefs.ErrNotFound, "pool %s does not exist", path)
	case errors.Is(err, fs.ErrPermission):
		err = errdefs.Wrapf(err, errdefs.ErrPermission, "pool %s: permission denied", path)
	}
	return hintPool(err)
}
