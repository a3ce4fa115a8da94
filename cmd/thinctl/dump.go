package main

import "github.com/spf13/cobra"

// poolExtraCmds are 'pool dump' and 'pool restore'.
func (a *app) poolExtraCmds() []*cobra.Command { return nil }
