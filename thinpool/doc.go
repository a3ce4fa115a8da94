// Package thinpool is a thin-provisioning engine in one sparse file: thin
// devices whose size is a promise, pool blocks allocated on first write,
// snapshots that share blocks and copy a block on the first write to it,
// and metadata that survives a crash at any moment.
//
// # Layout
//
// A pool file holds two superblocks, a metadata area (journal and
// checkpoints) and the data area of fixed-size blocks (64 KiB by default).
// FORMAT.md gives every byte. Each device maps virtual block ranges to pool
// block ranges (package extent); pool blocks carry reference counts, so a
// snapshot is a lazy clone of its origin's map plus one reference per extent.
//
// # Transactions
//
// Every change to the metadata is an operation (map, unmap, create,
// snapshot, delete, update) applied in memory and appended to the open
// transaction. Sync commits it: fdatasync the data, append one journal
// entry, fdatasync again. When the journal is full, or on Close, Grow,
// GrowMetadata, Checkpoint, Repair and Restore, the whole state is written as
// a checkpoint instead, and a new superblock points at it. Opening a pool reads the newest valid superblock,
// its checkpoint, and replays the journal up to the first torn entry. Device
// creation, snapshots, deletion and updates commit before they return.
//
// # Invariants
//
// Tests and Check refer to these by name.
//
//   - I1: every pool block's reference count equals the number of device
//     mappings that point at it. Open refuses a checkpoint in which a count
//     is lower (a block could be freed while mapped); a higher count is a
//     leak, which wastes space only: Check reports it and Repair fixes it.
//   - O1: recovery acts only on durable metadata: Open makes the file
//     durable (fdatasync) before it reads anything.
//   - J1: a journal entry checks out only at its own offset under its own
//     generation's random seal (format v2), so no stale bytes in the journal
//     can replay as an entry.
//   - I2: no mapping points past the end of the data area or its device.
//   - I3: a device's mappings never overlap (extent E1).
//   - A1: every block is exactly one of: referenced, free, freed in an
//     uncommitted or unreleased transaction, or allocated to a write in flight.
//   - C1: a write never changes a block whose reference count is above 1;
//     it copies it to a new block first (copy-on-write), unless it covers
//     the block whole, when nothing is copied.
//   - C2: a write also copies a block that lost a reference since the last
//     commit (it was shared when that transaction committed): after a crash
//     the other device maps it again.
//
// In format 3 (docs/metadata-v3.md) a block's count is the number of
// mapping-tree leaves that map it (N2), so a snapshot leaves its origin's
// blocks at count 1 until a leaf is copied: the write path first unshares
// the leaves of the range it writes (devMap.Unshare), then applies C1 to
// the counts; and a delete marks every block the device mapped for C2,
// since dropping a tree does not lower the counts of leaves another device
// still shares.
//   - D1: data reaches the disk before the metadata that maps it.
//   - R1: a block freed in a transaction is not reused before that
//     transaction is committed.
//   - R2: a block freed by a committed transaction is not reused while an I/O
//     that started before the commit is still running.
//   - Z1: a newly allocated block is always written whole (the rest of a
//     partial write is zeros, or the old contents for a copy), so it never
//     shows data of a deleted or other device.
//   - M1: the state always fits into a checkpoint that can be written next
//     to the current one; changes that would break this fail with
//     ErrMetadataFull before they are applied.
//
// # Concurrency
//
// Pool and Thin are safe for concurrent use. Writes to different blocks of
// one device run in parallel; writers that provision or copy the same block
// wait for each other so only one copies. Snapshot and Delete of a device
// wait for the writes in flight to it and hold new ones back.
package thinpool
