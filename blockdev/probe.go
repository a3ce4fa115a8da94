package blockdev

import (
	"bytes"
	"encoding/binary"
	"io"
)

// Probe returns the type of the filesystem on a device of size bytes read
// through r ("ext4", "xfs"), as blkid finds it by its magic number, or ""
// if it has none we know.
// REF: https://www.kernel.org/doc/html/latest/filesystems/ext4/super.html (s_magic at 1024+56)
func Probe(r io.ReaderAt, size int64) (string, error) {
	b := make([]byte, 4096)
	if _, err := r.ReadAt(b, 0); err != nil && size >= int64(len(b)) {
		return "", err
	}
	switch {
	case bytes.Equal(b[:4], []byte("XFSB")):
		return "xfs", nil
	case binary.LittleEndian.Uint16(b[1024+56:]) == 0xEF53:
		return "ext4", nil // ext2/3/4 share the magic; mount with ext4
	}
	return "", nil
}
