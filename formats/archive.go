package formats

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// FormatMajor and FormatMinor are the archive format version this package
// writes, and the newest it reads. The version is the format's own, not
// chsnap's release; SPEC.md says what bumps which.
const (
	FormatMajor = 1
	FormatMinor = 2
)

// MaxSectionSize is the largest section payload, in bytes, that a Writer
// writes and a reader accepts. Readers refuse a longer length before reading
// the payload, so no length from the file makes them allocate more.
const MaxSectionSize = 64 << 20

// MaxTableEntries is the largest number of sections (not counting the
// section table itself) an archive may hold.
const MaxTableEntries = 1 << 20

// Sizes of the fixed-size parts of an archive; SPEC.md lays them out.
const (
	headerSize        = 32 // file header
	sectionHeaderSize = 24 // kind, id, length, reserved
	checksumSize      = 8  // xxhash64 after each section's payload
	tableEntrySize    = 32 // kind, id, offset, length, checksum
	trailerSize       = 32 // magic, table offset, count, xxhash64

	sectionOverhead = sectionHeaderSize + checksumSize
)

// fileMagic opens every archive; trailerMagic opens its trailer.
var (
	fileMagic    = [8]byte{'C', 'H', 'S', 'N', 'A', 'P', 0x00, 0x1a}
	trailerMagic = [8]byte{'C', 'H', 'S', 'N', 'A', 'P', 'T', 'R'}
)

// supportedMinor is the newest minor version readers accept. It is
// FormatMinor; tests lower or raise it to exercise the version rules.
var supportedMinor uint16 = FormatMinor

// Sentinel errors. Every error a reader returns for bad input wraps exactly
// one of them, so callers branch with errors.Is; the message of the wrapping
// error names the byte offset and the section.
var (
	// ErrMagic means the data does not start with the archive magic: it is
	// not a chsnap archive at all.
	ErrMagic = errors.New("formats: not a chsnap archive (bad magic)")
	// ErrVersion means the archive's format version is one this reader
	// does not support: another major, or a newer minor.
	ErrVersion = errors.New("formats: unsupported format version")
	// ErrChecksum means a stored xxhash64 does not match the bytes it covers.
	ErrChecksum = errors.New("formats: checksum mismatch")
	// ErrTruncated means the archive ends early: in the header, inside a
	// section, before the section table or before the trailer.
	ErrTruncated = errors.New("formats: archive truncated")
	// ErrCorrupt means the archive's structure is inconsistent although its
	// checksums may match: an impossible length, nonzero reserved bytes, a
	// table that disagrees with the sections, trailing data.
	ErrCorrupt = errors.New("formats: archive corrupt")
)

// formatError is a reader error: a sentinel plus a message naming where in
// the archive it happened. errors.Is matches the sentinel.
type formatError struct {
	sentinel error
	msg      string
}

func (e *formatError) Error() string { return "formats: " + e.msg }
func (e *formatError) Unwrap() error { return e.sentinel }

func errorf(sentinel error, format string, args ...any) error {
	return &formatError{sentinel: sentinel, msg: fmt.Sprintf(format, args...)}
}

// SectionKind says what a section's payload holds. Values are stored as u32.
type SectionKind uint32

// The section kinds of format 1.x. SPEC.md describes each payload.
const (
	// KindConfig is the VM configuration, JSON, id 0.
	KindConfig SectionKind = 1
	// KindVCPU is one vCPU's state, JSON, id = vCPU index.
	KindVCPU SectionKind = 2
	// KindVM is the VM-wide KVM state (PIC, IOAPIC, PIT, clock), JSON, id 0.
	KindVM SectionKind = 3
	// KindDevice is one device's state, JSON, id = device index.
	KindDevice SectionKind = 4
	// KindHostResource lists the host resources to supply at restore, JSON, id 0.
	KindHostResource SectionKind = 5
	// KindMemoryIndex describes guest memory and its chunks, binary, id 0.
	KindMemoryIndex SectionKind = 6
	// KindMemoryChunk is one chunk of guest memory, binary, id = chunk number.
	KindMemoryChunk SectionKind = 7
	// KindTable is the section table; it is written by Writer.Close only.
	KindTable SectionKind = 0xFFFF
)

// String returns the kind's name as used in SPEC.md and in error messages,
// or "kind-0x…" for a kind this version does not know.
func (k SectionKind) String() string {
	switch k {
	case KindConfig:
		return "config"
	case KindVCPU:
		return "vcpu"
	case KindVM:
		return "vm"
	case KindDevice:
		return "device"
	case KindHostResource:
		return "host-resource"
	case KindMemoryIndex:
		return "memory-index"
	case KindMemoryChunk:
		return "memory-chunk"
	case KindTable:
		return "table"
	}
	return fmt.Sprintf("kind-%#x", uint32(k))
}

// Known reports whether k is a kind of this format version. Readers skip
// sections of unknown kinds (they come from a newer minor version).
func (k SectionKind) Known() bool {
	return (k >= KindConfig && k <= KindMemoryChunk) || k == KindTable
}

// Section is one verified section: its kind, its id within the kind and its
// payload. A Section returned by a reader owns its Payload.
type Section struct {
	Kind    SectionKind
	ID      uint32
	Payload []byte
}

// SectionInfo is one entry of the section table: where a section is and the
// checksum stored after it.
type SectionInfo struct {
	Kind SectionKind
	ID   uint32
	// Offset is the byte offset of the section header from the file start.
	Offset int64
	// Length is the payload length in bytes.
	Length uint64
	// Checksum is the xxhash64 of the section header and payload.
	Checksum uint64
}

// end returns the offset just past the section's checksum.
func (s SectionInfo) end() int64 {
	return s.Offset + sectionOverhead + int64(s.Length)
}

// describe names a section in error messages: "section 7 (memory-chunk 12)".
func describe(index int, kind SectionKind, id uint32) string {
	return fmt.Sprintf("section %d (%s %d)", index, kind, id)
}

var le = binary.LittleEndian

// putHeader encodes the file header for version major.minor into b.
func putHeader(b *[headerSize]byte, major, minor uint16) {
	*b = [headerSize]byte{}
	copy(b[0:8], fileMagic[:])
	le.PutUint16(b[8:10], major)
	le.PutUint16(b[10:12], minor)
	// b[12:16] flags and b[16:24] reserved stay zero in format 1.0.
	le.PutUint64(b[24:32], xxhash.Sum64(b[:24]))
}

// parseHeader checks a file header in the order that gives the most useful
// error: magic (is it an archive at all), checksum (is the header intact),
// version (can we read it), then the fields that version defines.
func parseHeader(b *[headerSize]byte) (major, minor uint16, err error) {
	if [8]byte(b[0:8]) != fileMagic {
		return 0, 0, errorf(ErrMagic, "file header at offset 0x0: magic is %q, want %q", b[0:8], fileMagic[:])
	}
	if got, want := le.Uint64(b[24:32]), xxhash.Sum64(b[:24]); got != want {
		return 0, 0, errorf(ErrChecksum, "file header at offset 0x0: checksum mismatch: stored %#016x, computed %#016x", got, want)
	}
	major, minor = le.Uint16(b[8:10]), le.Uint16(b[10:12])
	if major < FormatMajor {
		return major, minor, errorf(ErrVersion, "format %d.%d is older than supported major %d", major, minor, FormatMajor)
	}
	if major > FormatMajor || minor > supportedMinor {
		return major, minor, errorf(ErrVersion, "format %d.%d is newer than supported %d.%d", major, minor, FormatMajor, supportedMinor)
	}
	// No 1.x minor defines flags or reserved bytes yet; a minor that does
	// must accept them here for its own and later minors only.
	if flags := le.Uint32(b[12:16]); flags != 0 {
		return major, minor, errorf(ErrCorrupt, "file header at offset 0xc: flags %#x set, format %d.%d defines none", flags, major, minor)
	}
	if r := le.Uint64(b[16:24]); r != 0 {
		return major, minor, errorf(ErrCorrupt, "file header at offset 0x10: reserved bytes are %#x, want 0", r)
	}
	return major, minor, nil
}
