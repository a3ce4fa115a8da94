// Command thinctl manages thinpool pools, thin devices and snapshots.
//
// # Layout
//
// One file per noun: pool.go, device.go, snapshot.go, image.go,
// container.go, volume.go, info.go, version.go, daemon.go, bench.go,
// docs.go. A verb with machinery of its own gets <noun>_<verb>.go:
// pool_dump.go (dump and restore, which read the same format),
// device_import.go, device_export.go (their shared chunking is in
// transfer.go), device_diff.go, and device_mount.go: device attach,
// detach, mount and umount, which only the pool daemon runs. Helpers
// shared by every noun: output.go (tables, JSON, times), size.go,
// progress.go, interrupt.go, completion.go, input.go, exit.go; root.go has
// the app, its global flags and the root command.
//
// Each command is an options struct (its arguments and flags), a
// constructor newNounVerbCmd that binds the flags to it, and a plain run
// function runNounVerb(ctx, o) that does the work, as kind's and bbolt's
// commands are. Output follows the conventions in output.go.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
