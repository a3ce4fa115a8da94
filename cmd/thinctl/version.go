package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/thinpool"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// versionOptions are the flags of 'version' (none but the global ones).
type versionOptions struct{}

func (a *app) newVersionCmd() *cobra.Command {
	o := &versionOptions{}
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of thinctl and of the pool format",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runVersion(cmd.Context(), o)
		},
	}
}

func (a *app) runVersion(_ context.Context, o *versionOptions) error {
	v := struct {
		Version       string `json:"version"`
		FormatVersion int    `json:"formatVersion"`
	}{version, thinpool.FormatVersion}
	if a.json {
		return a.printJSON(v)
	}
	fmt.Fprintf(a.out, "thinctl %s (pool format v%d)\n", v.Version, v.FormatVersion)
	return nil
}
