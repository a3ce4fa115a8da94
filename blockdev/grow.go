package blockdev

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// GrowFS grows the filesystem of type fstype ("ext4" or "xfs") on dev to
// the size of the device. xfs grows only while mounted: it is mounted at
// dir, an empty scratch directory, for xfs_growfs. ext4 is checked first
// (e2fsck -f -p, which resize2fs requires) and grown unmounted.
// REF: https://man7.org/linux/man-pages/man8/resize2fs.8.html
// REF: https://man7.org/linux/man-pages/man8/xfs_growfs.8.html
func GrowFS(dev, fstype, dir string) error {
	if fstype == "xfs" {
		if err := Mount(dev, dir, "xfs", false, "nouuid"); err != nil {
			return err
		}
		out, err := exec.Command("xfs_growfs", dir).CombinedOutput()
		return errors.Join(wrapOut("xfs_growfs", out, err), Unmount(dir))
	}
	if out, err := exec.Command("e2fsck", "-f", "-p", dev).CombinedOutput(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 1 {
			return wrapOut("e2fsck", out, err)
		}
	}
	out, err := exec.Command("resize2fs", dev).CombinedOutput()
	return wrapOut("resize2fs", out, err)
}

// wrapOut adds the last line a failed command printed to its error.
func wrapOut(what string, out []byte, err error) error {
	if err == nil {
		return nil
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return fmt.Errorf("%s: %v: %s", what, err, lines[len(lines)-1])
}
