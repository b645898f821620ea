package formats

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// update rewrites golden files and the generated part of SPEC.md.
var update = flag.Bool("update", false, "rewrite testdata golden archives and the SPEC.md hex example")

// sentinels are the errors every reader failure on bad input must wrap.
var sentinels = []error{ErrMagic, ErrVersion, ErrChecksum, ErrTruncated, ErrCorrupt}

// isSentinel reports whether err wraps one of the sentinels.
func isSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// encode writes sections with a Writer and returns the archive.
func encode(t testing.TB, sections []Section) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	for _, s := range sections {
		if err := w.WriteSection(s.Kind, s.ID, s.Payload); err != nil {
			t.Fatalf("WriteSection(%s %d): %v", s.Kind, s.ID, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got, want := w.Written(), int64(buf.Len()); got != want {
		t.Fatalf("Written() = %d, buffer holds %d", got, want)
	}
	return buf.Bytes()
}

// decode reads an archive with Next until io.EOF.
func decode(data []byte) ([]Section, error) {
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	var out []Section
	for {
		s, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, s)
	}
}

// decodeAt reads an archive through ReadTable and ReadSectionAt, returning
// the sections of known kinds.
func decodeAt(data []byte) ([]Section, error) {
	r := bytes.NewReader(data)
	_, _, table, err := ReadTable(r, int64(len(data)))
	if err != nil {
		return nil, err
	}
	var out []Section
	for _, e := range table {
		s, err := ReadSectionAt(r, e)
		if err != nil {
			return out, err
		}
		if e.Kind.Known() {
			out = append(out, s)
		}
	}
	return out, nil
}

// sectionsEqual compares kinds, ids and payloads (nil and empty are equal).
func sectionsEqual(a, b []Section) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Kind != b[i].Kind || a[i].ID != b[i].ID || !bytes.Equal(a[i].Payload, b[i].Payload) {
			return false
		}
	}
	return true
}

// rawSection is a section for rawArchive, which can write what Writer
// refuses to: nonzero reserved fields, lying lengths, any kind.
type rawSection struct {
	kind     SectionKind
	id       uint32
	payload  []byte
	reserved uint64
	length   *uint64 // overrides len(payload) in the header
}

// rawOpts shapes a hand-built archive.
type rawOpts struct {
	major, minor uint16
	flags        uint32
	// fixTable edits the table entries before they are encoded.
	fixTable func([]SectionInfo) []SectionInfo
	// fixTrailer edits the trailer's table offset and count.
	fixTrailer func(off int64, count uint64) (int64, uint64)
	// noTable stops after the sections.
	noTable bool
}

// rawArchive builds an archive by hand with valid checksums everywhere,
// independently of Writer, following SPEC.md.
func rawArchive(o rawOpts, secs ...rawSection) []byte {
	var b []byte
	b = append(b, "CHSNAP\x00\x1a"...)
	b = le.AppendUint16(b, o.major)
	b = le.AppendUint16(b, o.minor)
	b = le.AppendUint32(b, o.flags)
	b = append(b, make([]byte, 8)...)
	b = le.AppendUint64(b, xxhash.Sum64(b))
	var table []SectionInfo
	put := func(s rawSection) SectionInfo {
		off := len(b)
		length := uint64(len(s.payload))
		if s.length != nil {
			length = *s.length
		}
		b = le.AppendUint32(b, uint32(s.kind))
		b = le.AppendUint32(b, s.id)
		b = le.AppendUint64(b, length)
		b = le.AppendUint64(b, s.reserved)
		b = append(b, s.payload...)
		sum := xxhash.Sum64(b[off:])
		b = le.AppendUint64(b, sum)
		return SectionInfo{Kind: s.kind, ID: s.id, Offset: int64(off), Length: uint64(len(s.payload)), Checksum: sum}
	}
	for _, s := range secs {
		table = append(table, put(s))
	}
	if o.noTable {
		return b
	}
	entries := table
	if o.fixTable != nil {
		entries = o.fixTable(append([]SectionInfo(nil), table...))
	}
	tinfo := put(rawSection{kind: KindTable, payload: appendTable(nil, entries)})
	off, count := tinfo.Offset, uint64(len(entries))
	if o.fixTrailer != nil {
		off, count = o.fixTrailer(off, count)
	}
	t := len(b)
	b = append(b, "CHSNAPTR"...)
	b = le.AppendUint64(b, uint64(off))
	b = le.AppendUint64(b, count)
	b = le.AppendUint64(b, xxhash.Sum64(b[t:]))
	return b
}

// sampleSections is a small archive's content with every kind and an empty
// payload.
func sampleSections() []Section {
	return []Section{
		{Kind: KindConfig, ID: 0, Payload: []byte(`{"vcpus":2,"memory_mib":64}`)},
		{Kind: KindVCPU, ID: 0, Payload: []byte(`{"rip":4096}`)},
		{Kind: KindVCPU, ID: 1, Payload: []byte(`{"rip":8192}`)},
		{Kind: KindVM, ID: 0, Payload: []byte(`{}`)},
		{Kind: KindDevice, ID: 3, Payload: nil},
		{Kind: KindHostResource, ID: 0, Payload: []byte(`[]`)},
		{Kind: KindMemoryChunk, ID: 12, Payload: []byte{0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 1, 2, 3, 4}},
		{Kind: KindMemoryIndex, ID: 0, Payload: []byte{0, 0, 0, 4, 0, 0, 0, 0, 1, 0, 0, 0}},
	}
}
