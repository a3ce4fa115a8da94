package main

import "github.com/spf13/cobra"

// deviceExtraCmds are 'device import', 'device export' and 'device diff'.
func (a *app) deviceExtraCmds() []*cobra.Command { return nil }
