// Package volumes is the object model above the thin pool: it serves thin
// devices as block devices (through blockdev), mounts filesystems on them,
// and runs the pool daemon that thinctl talks to. Later it holds images,
// containers and volumes; every record it keeps lives in the pool's own
// metadata (device labels), never in side files.
//
// A Manager is safe for concurrent use.
package volumes
