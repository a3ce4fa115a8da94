package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/daemon"
	"github.com/thinpool/thinpool/volumes"
)

// deviceAttachOptions are the argument and flag of 'device attach'.
type deviceAttachOptions struct {
	name     string
	readOnly bool
}

func (a *app) newDeviceAttachCmd() *cobra.Command {
	o := &deviceAttachOptions{}
	cmd := &cobra.Command{
		Use: "attach NAME", Annotations: map[string]string{annObjects: "device:1"},
		Short: "Serve a device as a loop device (/dev/loopN); starts the daemon if needed",
		Example: `  dev=$(thinctl device attach web)
  mkfs.ext4 $dev`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeNames("device", 1, cobra.ShellCompDirectiveNoFileComp),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			return a.runDeviceAttach(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&o.readOnly, "readonly", false, "attach read-only (read-only snapshots always are)")
	return cmd
}

func (a *app) runDeviceAttach(_ context.Context, o *deviceAttachOptions) error {
	h, err := a.host()
	if err != nil {
		return err
	}
	at, err := h.Attach(o.name, o.readOnly)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(attachmentView(at))
	}
	fmt.Fprintln(a.out, at.Loop)
	return nil
}

// deviceDetachOptions are the argument of 'device detach'.
type deviceDetachOptions struct {
	target string // a device name or /dev/loopN
}

func (a *app) newDeviceDetachCmd() *cobra.Command {
	o := &deviceDetachOptions{}
	return &cobra.Command{
		Use:               "detach NAME|/dev/loopN",
		Short:             "Stop serving a device as a loop device",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeNames("device", 1, cobra.ShellCompDirectiveNoFileComp),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.target = args[0]
			return a.runDeviceDetach(cmd.Context(), o)
		},
	}
}

func (a *app) runDeviceDetach(_ context.Context, o *deviceDetachOptions) error {
	if a.daemon == nil { // no daemon runs, so nothing is attached
		return volumes.NotAttached(o.target)
	}
	if err := a.daemon.Host().Detach(o.target); err != nil {
		return err
	}
	a.say("Detached %s", o.target)
	return nil
}

// deviceMountOptions are the arguments and flags of 'device mount'.
type deviceMountOptions struct {
	name, dir string
	mkfs      string // ext4 or xfs: make it if the device has no filesystem
	readOnly  bool
	options   string // as for mount -o
}

func (a *app) newDeviceMountCmd() *cobra.Command {
	o := &deviceMountOptions{}
	cmd := &cobra.Command{
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
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: a.completeNames("device", 1, cobra.ShellCompDirectiveFilterDirs),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name, o.dir = args[0], args[1]
			return a.runDeviceMount(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.mkfs, "mkfs", "", "make this filesystem (ext4 or xfs) if the device has none")
	f.BoolVar(&o.readOnly, "readonly", false, "mount read-only")
	f.StringVarP(&o.options, "options", "o", "", "mount options, as for mount -o")
	return cmd
}

func (a *app) runDeviceMount(_ context.Context, o *deviceMountOptions) error {
	h, err := a.host()
	if err != nil {
		return err
	}
	res, err := h.MountDevice(o.name, a.abs(o.dir), daemon.MountOptions{Mkfs: o.mkfs, ReadOnly: o.readOnly, Options: o.options})
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(deviceMountView(res))
	}
	if res.Formatted {
		a.say("Made %s on %q (%s): it cost %s of pool", res.FSType, o.name, res.Loop, formatSize(res.MkfsCost))
	}
	a.say("Mounted %q (%s, %s) at %s", o.name, res.Loop, res.FSType, res.MountDir)
	return nil
}

// deviceUmountOptions are the argument of 'device umount'.
type deviceUmountOptions struct {
	target string // a mount point, a device name or /dev/loopN
}

func (a *app) newDeviceUmountCmd() *cobra.Command {
	o := &deviceUmountOptions{}
	return &cobra.Command{
		Use:               "umount DIR|NAME",
		Aliases:           []string{"unmount"},
		Short:             "Unmount a device's filesystem and detach it",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeNames("device", 1, cobra.ShellCompDirectiveNoFileComp),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.target = args[0]
			return a.runDeviceUmount(cmd.Context(), o)
		},
	}
}

func (a *app) runDeviceUmount(_ context.Context, o *deviceUmountOptions) error {
	if a.daemon == nil { // no daemon runs, so nothing is mounted
		return volumes.NotMounted(o.target)
	}
	key := o.target
	if strings.Contains(key, "/") || key == "." || key == ".." {
		key = a.abs(key) // a directory or /dev/loopN, not a device name
	}
	if err := a.daemon.Host().Umount(key); err != nil {
		return err
	}
	a.say("Unmounted and detached %s", o.target)
	return nil
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
