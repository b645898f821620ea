// Package formats holds chsnap's pure encoders and decoders, with no KVM and
// no device code, so that every one of them can be unit-tested and fuzzed.
// Today that is the snapshot archive container; disk images and cpio follow.
//
// # The snapshot archive
//
// SPEC.md defines the archive byte by byte; this is the map. All integers
// are little-endian, every checksum is xxhash64 (github.com/cespare/xxhash/v2):
//
//	offset 0   file header (32)   "CHSNAP\x00\x1a" · major u16 · minor u16 · flags u32 · reserved [8] · xxhash64 u64
//	offset 32  section 0          kind u32 · id u32 · length u64 · reserved u64 · payload[length] · xxhash64(header‖payload) u64
//	           section 1 …        back to back, in the order they were written
//	           section table      a section of kind KindTable, id 0: per section kind u32 · id u32 · offset u64 · length u64 · checksum u64
//	size-32    trailer (32)       "CHSNAPTR" · table offset u64 · section count u64 · xxhash64 u64
//
// Writer produces it in one pass over an io.Writer (no seeking, so it can
// stream to a pipe or an HTTP body). Reader consumes it in one pass over an
// io.Reader and returns only sections whose checksum matched, then checks
// the table against what it read. ReadTable and ReadSectionAt give random
// access through an io.ReaderAt, starting from the trailer. Verify checks a
// whole archive in constant memory.
//
// The package knows the container, not the payloads: JSON sections are
// encoded by their owners (vm, devstate) and memory sections by memdump.
// The format version is the archive's own, independent of chsnap releases;
// a reader accepts major 1 with any minor up to FormatMinor and skips
// sections of kinds it does not know.
package formats
