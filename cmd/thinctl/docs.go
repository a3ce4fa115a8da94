package main

import (
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// docsCmd writes man pages (and markdown) for every command; hidden, used by
// 'make docs'.
func (a *app) docsCmd(root *cobra.Command) *cobra.Command {
	var markdown bool
	cmd := &cobra.Command{
		Use:    "docs DIR",
		Short:  "Write man pages for every command into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
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
