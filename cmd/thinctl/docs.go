package main

import (
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// docsCmd writes man pages (or markdown) for every command; 'make docs' and
// 'make install' use it.
func (a *app) docsCmd(root *cobra.Command) *cobra.Command {
	var markdown bool
	cmd := &cobra.Command{
		Use:   "docs DIR",
		Short: "Write man pages (section 8) or markdown for every command into DIR",
		Long: `Write one man page per command (thinctl.8, thinctl-device-create.8, ...)
into DIR, or markdown with --markdown. 'make install' installs them; read one
with 'man -l DIR/thinctl-pool-create.8'.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			root.DisableAutoGenTag = true
			if markdown {
				return doc.GenMarkdownTree(root, args[0])
			}
			hdr := &doc.GenManHeader{Title: "THINCTL", Section: "8", Source: "thinpool " + version, Manual: "thinpool"}
			if err := doc.GenManTree(root, hdr, args[0]); err != nil {
				return err
			}
			a.say("wrote man pages to %s", args[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&markdown, "markdown", false, "write markdown instead of man pages")
	return cmd
}
