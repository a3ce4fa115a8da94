package main

import (
	"errors"
	"io/fs"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/errdefs"
)

// Exit codes: one per kind of error (see errdefs), 1 for any other
// failure, and 128+N for a command a signal N ended (130 for Ctrl-C, 143 for
// SIGTERM). 'daemon status' exits 3 when no daemon runs, as an LSB status
// does. The table is in 'thinctl --help' (exitHelp) and README.md.
const (
	exitFailure      = 1  // any other failure
	exitInvalid      = 2  // bad flag, argument, name, size or label
	exitNotFound     = 3  // no such device, image, container, volume or pool
	exitExists       = 4  // the name is taken
	exitInUse        = 5  // busy: mounted, attached, held by a process, pool locked
	exitPrecondition = 6  // refused in its state: read-only device, failed or closed pool
	exitNoSpace      = 7  // the pool's data or metadata area is full
	exitCorrupt      = 8  // the pool failed validation
	exitPermission   = 9  // permission denied (not root)
	exitUnavailable  = 10 // the pool daemon is not running or cannot be reached
)

// exitCodes maps each kind to its exit code.
var exitCodes = map[error]int{
	errdefs.ErrInvalidArgument:    exitInvalid,
	errdefs.ErrNotFound:           exitNotFound,
	errdefs.ErrAlreadyExists:      exitExists,
	errdefs.ErrInUse:              exitInUse,
	errdefs.ErrFailedPrecondition: exitPrecondition,
	errdefs.ErrNoSpace:            exitNoSpace,
	errdefs.ErrCorrupt:            exitCorrupt,
	errdefs.ErrPermission:         exitPermission,
	errdefs.ErrUnavailable:        exitUnavailable,
}

// exitHelp is the exit code table of 'thinctl --help'.
const exitHelp = `
Exit codes: 0 success, 1 failure, 2 invalid argument (flag, name, size),
3 not found, 4 already exists, 5 in use (mounted, attached, held open,
pool locked), 6 refused in its state (read-only device, failed pool),
7 no space in the pool, 8 corrupt pool (also 'pool check' finding errors),
9 permission denied (not root), 10 pool daemon unavailable,
130/143 interrupted by SIGINT/SIGTERM.`

// exitKind is the kind whose exit code is code, or nil for none: the kind
// of the error a thinctl process exited with.
func exitKind(code int) error {
	for kind, c := range exitCodes {
		if c == code {
			return kind
		}
	}
	return nil
}

// exitCode is the exit code for err: that of its kind, or of a missing
// or forbidden file, else exitFailure.
func exitCode(err error) int {
	var ex *exitError
	if errors.As(err, &ex) {
		return ex.code
	}
	if code, ok := exitCodes[errdefs.Kind(err)]; ok {
		return code
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return exitNotFound
	case errors.Is(err, fs.ErrPermission):
		return exitPermission
	}
	return exitFailure
}

// markUsageErrors makes the errors cobra raises for bad flags and
// positional arguments of root and its subcommands (and the checks that
// checkInput adds to them) invalid arguments, keeping their text. An error
// that has a kind keeps it.
func markUsageErrors(root *cobra.Command) {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return invalid(err) })
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		if args := cmd.Args; args != nil {
			cmd.Args = func(cmd *cobra.Command, a []string) error { return invalid(args(cmd, a)) }
		}
		for _, c := range cmd.Commands() {
			walk(c)
		}
	}
	walk(root)
}

// invalid marks err, if it has no kind, as an invalid argument.
func invalid(err error) error {
	if err == nil || errdefs.Kind(err) != nil {
		return err
	}
	return errdefs.Newf(errdefs.ErrInvalidArgument, "%w", err)
}
