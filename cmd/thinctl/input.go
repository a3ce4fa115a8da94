package main

import (
	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/volumes"
)

// checkInput runs args, then check: the flags are parsed by then, and the
// error comes before the command is sent to (or starts) the pool daemon, so
// bad input changes nothing.
func checkInput(args cobra.PositionalArgs, check func(args []string) error) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := args(cmd, a); err != nil {
			return err
		}
		return check(a)
	}
}

// checkImageRef refuses an image reference that is not NAME[:TAG].
func checkImageRef(ref string) error {
	_, err := volumes.ParseImageRef(ref)
	return err
}

// checkSize refuses a size flag that does not parse; "" is no flag.
func checkSize(s string) error {
	if s == "" {
		return nil
	}
	_, err := parseSize(s)
	return err
}
