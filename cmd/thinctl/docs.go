package main

import (
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// docsOptions are the argument and flags of 'docs', which writes man pages
// (or markdown) for every command; 'make docs' and 'make install' use it.
type docsOptions struct {
	dir      string
	markdown bool
}

func (a *app) newDocsCmd() *cobra.Command {
	o := &docsOptions{}
	cmd := &cobra.Command{
		Use:   "docs DIR",
		Short: "Write man pages (section 8) or markdown for every command into DIR",
		Long: `Write one man page per command (thinctl.8, thinctl-device-create.8, ...)
into DIR, or markdown with --markdown. 'make install' installs them; read one
with 'man -l DIR/thinctl-pool-create.8'.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.dir = args[0]
			return a.runDocs(cmd.Root(), o)
		},
	}
	cmd.Flags().BoolVar(&o.markdown, "markdown", false, "write markdown instead of man pages")
	return cmd
}

// runDocs writes the pages of root and every command below it.
func (a *app) runDocs(root *cobra.Command, o *docsOptions) error {
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}
	root.DisableAutoGenTag = true
	if o.markdown {
		return doc.GenMarkdownTree(root, o.dir)
	}
	hdr := &doc.GenManHeader{Title: "THINCTL", Section: "8", Source: "thinpool " + version, Manual: "thinpool"}
	if err := doc.GenManTree(root, hdr, o.dir); err != nil {
		return err
	}
	a.say("wrote man pages to %s", o.dir)
	return nil
}
