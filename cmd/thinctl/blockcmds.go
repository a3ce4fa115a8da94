package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/blockdev"
	"github.com/thinpool/thinpool/daemon"
	"github.com/thinpool/thinpool/thinpool"
	"github.com/thinpool/thinpool/volumes"
)

// manager returns the daemon's device manager; the commands that use it
// are forwarded to the daemon (see needsDaemon), except the read-only ones
// run with no daemon (see readsOnly), which get an offline manager over the
// pool file.
func (a *app) manager() (*volumes.Manager, error) {
	if a.daemon != nil {
		return a.daemon.Manager(), nil
	}
	if !a.offline {
		return nil, fmt.Errorf("this command needs the pool daemon")
	}
	if a.offlinePool == nil {
		p, err := thinpool.Open(a.poolPath)
		if err != nil {
			return nil, hintPool(err)
		}
		a.offlinePool = p
	}
	return volumes.Offline(a.offlinePool), nil
}

// host returns the daemon's Host, which serves devices; the commands that
// use it are forwarded to the daemon (see needsDaemon).
func (a *app) host() (*daemon.Host, error) {
	if a.daemon == nil {
		return nil, fmt.Errorf("this command needs the pool daemon")
	}
	return a.daemon.Host(), nil
}

func (a *app) deviceBlockCmds() []*cobra.Command {
	var ro bool
	attach := &cobra.Command{
		Use: "attach NAME", Annotations: map[string]string{annObjects: "device:1"},
		Short: "Serve a device as a loop device (/dev/loopN); starts the daemon if needed",
		Example: `  dev=$(thinctl device attach web)
  mkfs.ext4 $dev`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := a.host()
			if err != nil {
				return err
			}
			at, err := h.Attach(args[0], ro)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(attachmentView(at))
			}
			fmt.Fprintln(a.out, at.Loop)
			return nil
		},
	}
	attach.Flags().BoolVar(&ro, "readonly", false, "attach read-only (read-only snapshots always are)")

	detach := &cobra.Command{
		Use:   "detach NAME|/dev/loopN",
		Short: "Stop serving a device as a loop device",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if a.daemon == nil { // no daemon runs, so nothing is attached
				return volumes.NotAttached(args[0])
			}
			if err := a.daemon.Host().Detach(args[0]); err != nil {
				return err
			}
			a.say("Detached %s", args[0])
			return nil
		},
	}

	var mkfs, opts string
	var mro bool
	mount := &cobra.Command{
		Use: "mount NAME DIR", Annotations: map[string]string{annObjects: "device:1"},
		Short: "Attach a device if needed, make a filesystem on first use (--mkfs), and mount it",
		Long: `Attach the device if needed and mount its filesystem at DIR (created if
missing). With --mkfs ext4|xfs a device that has no filesystem yet gets one;
mkfs discards the device first and ext4 initialises lazily, so a filesystem
on a 100 GiB device costs megabytes of pool, not gigabytes: the command says
how much it cost. A device that already has a filesystem is never
reformatted.`,
		Example: `  thinctl device mount web /mnt/web --mkfs ext4
  thinctl device mount web-snap /mnt/snap --readonly`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := a.host()
			if err != nil {
				return err
			}
			res, err := h.MountDevice(args[0], a.abs(args[1]), daemon.MountOptions{Mkfs: mkfs, ReadOnly: mro, Options: opts})
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(deviceMountView(res))
			}
			if res.Formatted {
				a.say("Made %s on %q (%s): it cost %s of pool", res.FSType, args[0], res.Loop, formatSize(res.MkfsCost))
			}
			a.say("Mounted %q (%s, %s) at %s", args[0], res.Loop, res.FSType, res.MountDir)
			return nil
		},
	}
	mount.Flags().StringVar(&mkfs, "mkfs", "", "make this filesystem (ext4 or xfs) if the device has none")
	mount.Flags().BoolVar(&mro, "readonly", false, "mount read-only")
	mount.Flags().StringVarP(&opts, "options", "o", "", "mount options, as for mount -o")

	umount := &cobra.Command{
		Use:     "umount DIR|NAME",
		Aliases: []string{"unmount"},
		Short:   "Unmount a device's filesystem and detach it",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if a.daemon == nil { // no daemon runs, so nothing is mounted
				return volumes.NotMounted(args[0])
			}
			h := a.daemon.Host()
			key := args[0]
			if strings.Contains(key, "/") || key == "." || key == ".." {
				key = a.abs(key) // a directory or /dev/loopN, not a device name
			}
			if err := h.Umount(key); err != nil {
				return err
			}
			a.say("Unmounted and detached %s", args[0])
			return nil
		},
	}
	return []*cobra.Command{attach, detach, mount, umount}
}

// freeze freezes the filesystem mounted at dir and returns the thaw.
func (a *app) freeze(dir string) (func(), error) {
	dir = a.abs(dir)
	if err := blockdev.Freeze(dir); err != nil {
		return nil, fmt.Errorf("freeze %s: %w", dir, err)
	}
	return func() {
		if err := blockdev.Thaw(dir); err != nil {
			fmt.Fprintf(a.err, "thinctl: thaw %s: %v (run 'fsfreeze -u %s')\n", dir, err, dir)
		}
	}, nil
}
