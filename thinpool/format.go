package thinpool

// The on-disk format's constants and limits, in one place: FORMAT.md
// describes each structure. A constant marked "Part of the on-disk format"
// must not change: pools written with it must still open.

// Sizes and limits.
const (
	// SectorSize is the unit of device sizes.
	SectorSize = 512
	// DefaultBlockSize is the data block size when Options.BlockSize is 0.
	DefaultBlockSize = 64 << 10
	// MinBlockSize and MaxBlockSize bound the data block size, as in dm-thin.
	MinBlockSize = 64 << 10
	MaxBlockSize = 1 << 30
	// MaxDeviceSize is the largest virtual size of a thin device (4 PiB).
	MaxDeviceSize = 1 << 52

	minMetadataSize = 1 << 20
	maxMetadataSize = 16 << 30
	maxDataBlocks   = 1 << 40
	maxDataBytes    = 1 << 60 // data area size limit, so offsets never overflow
	// maxJournalSize bounds replay at open: about 2.5 µs per replayed
	// operation, so 8 MiB of small entries replays in about 1 s.
	maxJournalSize = 8 << 20
)

// Part of the on-disk format; see FORMAT.md "Superblock". Do not change.
const (
	// metaSectorSize is the unit of the metadata area: superblock slots,
	// journal entries and checkpoints start on its boundaries. Not to be
	// confused with SectorSize, the 512-byte unit of device sizes.
	metaSectorSize = 4096
	superMagic     = "THINPOOL"
	formatVersion  = 2 // v2 seals journal entries (FORMAT.md "Version history")
	// formatV1 is the oldest version this package opens; such a pool's
	// journal is unsealed, and opening it upgrades it (OpenFile).
	formatV1 = 1
	// formatV3 keeps the state in copy-on-write B+trees
	// (docs/metadata-v3.md); pools get it only when Options.FormatVersion
	// asks for it, until upgrade, Check and dumps support it.
	formatV3       = 3
	superblockSize = 128 // encoded bytes of v1 and v2; the rest of the sector is zero
	// superblockV3Size is the encoded size of a v3 superblock: v2's first
	// 124 bytes, the v3 fields, then the CRC.
	superblockV3Size = superblockSize + 64
	superSlots       = 2 // slot i lives at offset i*metaSectorSize
	metaOffset       = 64 << 10
)

// FormatVersion is the version of the on-disk format this package writes.
const FormatVersion = formatVersion

// Part of the on-disk format; see FORMAT.md "Journal entry". Do not change.
const (
	journalMagic    = 0x454a5054 // "TPJE"
	entryHeaderSize = 32
	maxEntryOps     = 1 << 24
	maxEntryPayload = 1 << 30
	entryAlign      = metaSectorSize
)

// Part of the on-disk format; see FORMAT.md "Checkpoint". Do not change.
const (
	ckptMagic = 0x4b435054 // "TPCK"
	// ckptVersion is the checkpoint layout's own version: v2 of the format
	// changed the superblock and the journal, not the checkpoint.
	ckptVersion    = 1
	ckptHeaderSize = 64
	mappingSize    = 24 // v, p, len: three u64
	refRunSize     = 20 // p, len: u64; count: u32
	devHeaderSize  = 8  // number of mappings, before them
)

// minDevRecord is the smallest encoded device: record and mapping count.
const minDevRecord = 4 + 4 + 4 + 8 + 8 + 2 + 1 + 2 + devHeaderSize

// Limits on device metadata. Part of the on-disk format: decoders reject
// larger values.
const (
	MaxNameLen       = 255
	MaxLabels        = 256
	MaxLabelKeyLen   = 255
	MaxLabelValueLen = 60 << 10 // fits the u16 length of the encoding
	maxLabelBytes    = 128 << 10
)

// Device flags. Part of the on-disk format; see FORMAT.md "Device record".
const (
	flagReadOnly uint32 = 1 << 0
	knownFlags          = flagReadOnly
)
