// Package archive reads container images from docker save tarballs, OCI
// image layouts (directory or tar) and plain root filesystem tars, and hands
// each layer out as a verified, uncompressed tar stream. It uses
// go-containerregistry for the formats: pkg/v1/tarball for docker save,
// pkg/v1/layout for OCI layouts, pkg/v1 for the manifest and config types.
//
// # Formats
//
// [Open] tells the format from the content, not the file name:
//
//   - a directory is an OCI image layout (it must hold index.json and
//     oci-layout);
//   - a tar holding manifest.json (a JSON array) is a docker save tarball,
//     old style (<id>/layer.tar) or Docker 25+ (blobs/sha256/...). Several
//     images may share it; each is picked by a repo tag that no earlier image
//     in manifest.json carries, so only an untagged image among several
//     cannot be read (ErrUnsupported);
//   - a tar holding oci-layout and index.json is an OCI layout; its layout
//     files are copied to a temporary directory first, because pkg/v1/layout
//     reads a directory;
//   - any other tar with at least one entry is a root filesystem: one layer
//     whose diffID is the sha256 of the file, with a config made up for it
//     (os linux, the host's architecture, created = the file's mtime).
//
// A gzip or zstd compressed input ("docker save img | gzip") is decompressed
// to a temporary file first. "-" reads standard input, spooled to a
// temporary file because the formats need random access. Open walks nested
// indexes (multi-platform images give one Image each, see Image.Platform)
// and skips buildx attestation manifests.
//
// # Invariants
//
//   - A1: a stream from [Layer.Open] ends in an error wrapping
//     ErrDigestMismatch, not io.EOF, unless its bytes hash to Layer.DiffID
//     (and number Layer.Size when that is known).
//   - A2: Open holds no manifest, index or config larger than
//     [MaxMetadataSize] in memory, and never a layer: layers are streamed.
//     Manifest and config blobs of an OCI layout are checked against their
//     digests at Open; a docker save config is when its file name holds it.
//   - A3: Open never changes its input. Temporary files live in one
//     directory that [Archive.Close] removes; a failed Open removes it itself.
//
// # Caveats
//
// Temporary copies (stdin, a compressed input, an OCI layout tar) take as
// much disk as the uncompressed archive, with no limit. A docker save with
// gzip layers (as go-containerregistry writes them) is hashed whole the
// first time one of its layers is opened, because pkg/v1/tarball needs the
// compressed digests to find a layer.
//
// # Concurrency
//
// An Archive is read-only after Open: reading its fields and calling
// Layer.Open from several goroutines is safe. Each stream is for one
// goroutine. Close must not run while streams are open.
package archive
