// Package btree holds the thin pool's metadata format v3 (see
// docs/metadata-v3.md): copy-on-write B+trees in 4 KiB nodes with
// reference counts, so that a snapshot is one more reference to a root and
// a checkpoint writes only the nodes that changed.
//
// # Layers
//
//   - node.go: the node codec (32-byte header, CRC-32C under the pool
//     seed, internal and leaf entries, space-map pages).
//   - [Store]: nodes over a [Storage] at a base offset, the metadata space
//     map (a u32 count per node, in groups with two page slots each), the
//     node allocator and a bounded cache of decoded nodes.
//   - [Tree]: a B+tree of u64 keys and fixed-size values that shadows
//     shared or durable nodes before changing them.
//   - [DataSpace]: pool block reference counts as runs (extent.RefCounts on
//     disk); [Mapping]: a device's extents (extent.Map on disk).
//   - [Devices]: the device tree, device id → [DeviceEntry] (fixed details,
//     and an opaque record in a chain of blob nodes that the entry owns).
//
// Nothing here is safe for concurrent use; the engine serialises metadata
// changes.
//
// # Generations
//
// A store's open generation g collects changes. Flush(g) writes them; the
// caller fdatasyncs, writes a superblock naming g and the roots, fdatasyncs
// and calls Committed(g). A crash anywhere in between leaves generation g−1
// readable: no node or space-map page it reaches was written.
//
// # Invariants
//
// Tests refer to these by name.
//
//   - N1: a node's count equals the number of parents and roots (device
//     entries, the data space map's superblock field) that reach it; a node
//     with count 0 is free or freed in the open generation.
//   - N2: a pool block's count equals the number of distinct leaves that
//     map it (a leaf shared by several trees counts once).
//   - N3: a node that the last committed generation reaches is never
//     written before a later committed generation frees it, and a node
//     freed in generation g is not handed out before Committed(g).
//   - N4: every parent→child link names the child's id and generation, and
//     the child's first key is the parent's key for it.
//   - B1: every node but the root holds at least a third of its capacity,
//     so a tree's height is logarithmic in its entries.
package btree
