package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/daemon"
	"github.com/thinpool/thinpool/volumes"
)

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

// attachmentJSON is the JSON of 'device attach'.
type attachmentJSON struct {
	Device   string `json:"device"`
	ID       uint32 `json:"id"`
	Loop     string `json:"loop"`
	File     string `json:"file"` // the FUSE file behind the loop device
	ReadOnly bool   `json:"readOnly"`
	MountDir string `json:"mountDir"` // "" when not mounted
	FSType   string `json:"fsType"`   // "" when not mounted
}

func attachmentView(at *daemon.Attachment) attachmentJSON {
	return attachmentJSON{Device: at.Device, ID: at.ID, Loop: at.Loop, File: at.File, ReadOnly: at.ReadOnly,
		MountDir: at.MountDir, FSType: at.FSType}
}

// deviceMountJSON is the JSON of 'device mount'.
type deviceMountJSON struct {
	attachmentJSON
	Formatted bool  `json:"formatted"` // --mkfs made a filesystem
	MkfsCost  int64 `json:"mkfsCost"`  // pool bytes the new filesystem took
}

func deviceMountView(r *daemon.MountResult) deviceMountJSON {
	return deviceMountJSON{attachmentJSON: attachmentView(&r.Attachment), Formatted: r.Formatted, MkfsCost: r.MkfsCost}
}
