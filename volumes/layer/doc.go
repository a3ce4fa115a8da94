// Package layer applies OCI/Docker image layer tarballs to a directory, the
// way containerd's archive.Apply and Docker's layer unpacking do: it reads a
// layer's uncompressed diff and changes the directory (typically the mounted
// filesystem of a thin device that holds the lower layers) so that it becomes
// the image's filesystem up to and including that layer.
//
// REF: https://github.com/opencontainers/image-spec/blob/main/layer.md
// ("Applying Changesets", "Whiteouts").
//
// Apply is safe to call concurrently on different roots. While it runs it must
// be the only writer under its root; concurrent changes by others cannot make
// it write outside the root (C1) but make the result undefined.
//
// # Entries
//
// Regular files are always written to a new inode: an existing entry of that
// name is unlinked first, so a lower-layer file hard-linked elsewhere keeps
// its content. Runs of 64 KiB of zeros are left as holes, so sparse files stay
// sparse. Directories are created, or, when a directory of that name exists,
// kept with their contents and given the entry's owner, mode and xattrs.
// Symlinks, hard links, character and block devices and fifos are created as
// given. Any other existing entry in the way is removed first (a whole tree
// for a directory).
//
// Metadata is applied in the order the kernel needs: owner (lchown), then
// mode including setuid/setgid/sticky (chown clears setuid), then xattrs
// from SCHILY.xattr.* PAX records (chown and writes clear
// security.capability), then access and modification times. Directory
// times are set after the last entry (T1), since creating children changes
// them. A hard link gets no metadata of its own: it shares the target's inode.
// An xattr the filesystem or kernel refuses (EOPNOTSUPP, EPERM, EINVAL, E2BIG,
// ERANGE, EACCES; for example user.* on a symlink) is skipped, counted in
// [Stats].Warnings and reported to [Options].Warn; other xattr errors fail.
//
// Apply does not fsync; sync the filesystem (syncfs, unmount) before relying
// on the result. When Apply fails, root holds part of the layer and should
// be discarded.
//
// # Names
//
// Entry names and hard link targets are cleaned (path.Clean) and then:
//
//   - an absolute name is taken relative to root, as in a chroot: "/etc/x"
//     and "/../etc/x" both mean root/etc/x;
//   - a relative name that still begins with ".." after cleaning ("../x",
//     "a/../../x") is refused with [ErrEscape] and Apply stops (C2), as
//     Docker does; "a/../b" is root/b;
//   - a name that is root itself ("./", "/") is ignored, as containerd does:
//     the caller owns the root directory's own metadata;
//   - names longer than [MaxNameLen] bytes or holding NUL are refused with
//     [ErrInvalid].
//
// Symlinks met along a name (in the layer or in lower layers, such as
// lib -> usr/lib) are followed, but as if root were "/": "evil -> /" and
// "evil -> ../../.." both lead to root itself. Missing parent directories are
// created with mode 0755, owned by the caller; a parent that is a dangling
// symlink is not created through, so the entry fails.
//
// # Whiteouts
//
// ".wh.NAME" removes NAME (a file or a whole tree) left by lower layers, and
// ".wh..wh..opq" in directory D removes everything lower layers left in D.
// Whiteouts never remove what this layer itself wrote (W1), wherever the
// whiteout sits in the tar relative to those entries: Apply records the path
// of every entry it writes, and their ancestors, and a whiteout of such a
// path, or an opaque directory holding such paths, only removes the other
// (lower) entries inside it. An opaque marker makes D a real directory: D is
// created when missing, and a symlink or file in its place is replaced. The
// marker's final component D is not followed; a ".wh.NAME" for a symlink
// removes the symlink, never its target. Whiteout files are never created
// (W2). Other AUFS metadata (names starting ".wh..wh.") is skipped, as Docker
// does.
//
// The record is lexical: when a layer writes through one alias of a
// directory ("lib/x" with lib -> usr/lib) and makes another alias opaque
// ("usr/lib/.wh..wh..opq"), the entry is not recognised as its own.
//
// # Invariants
//
//   - C1: nothing outside root is created, written, changed or removed.
//     Parent directories are opened with openat2(RESOLVE_IN_ROOT |
//     RESOLVE_NO_MAGICLINKS) relative to a descriptor of root, and every
//     change is an *at call on a final name that is never followed
//     (O_NOFOLLOW, O_EXCL, AT_SYMLINK_NOFOLLOW, linkat without
//     AT_SYMLINK_FOLLOW, unlinkat). Hard link targets resolve the same way.
//   - C2: a name that leaves root lexically is an error, not a clamp.
//   - W1, W2: see Whiteouts.
//   - T1: see Entries.
//   - L1: memory does not grow with a file's claimed size: data is copied in
//     64 KiB chunks. Entry count ([Options].MaxEntries), name length
//     ([MaxNameLen]) and file size ([Options].MaxFileSize) are bounded;
//     archive/tar bounds PAX and GNU long-name headers to 1 MiB. A sparse
//     file's holes are still read as zeros, so bound its claimed size with
//     MaxFileSize or the context.
//
// Requires Linux 5.6 or later (openat2).
package layer
