package formats

import (
	"bytes"
	"errors"
	"runtime"
	"testing"
)

// smallArchive is the archive the byte-by-byte damage tests walk.
func smallArchive(t *testing.T) []byte {
	return encode(t, []Section{
		{Kind: KindConfig, Payload: []byte(`{"vcpus":1}`)},
		{Kind: KindVCPU, ID: 0, Payload: []byte(`{"rip":1}`)},
		{Kind: KindDevice, ID: 2},
		{Kind: KindMemoryChunk, ID: 1, Payload: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}},
	})
}

// readEverything reads data by all three paths and returns their errors.
func readEverything(data []byte) (stream, random, verify error) {
	_, stream = decode(data)
	_, random = decodeAt(data)
	_, verify = Verify(bytes.NewReader(data))
	return
}

func TestTruncatedAtEveryOffset(t *testing.T) {
	data := smallArchive(t)
	for n := 0; n < len(data); n++ {
		stream, random, verify := readEverything(data[:n])
		for name, err := range map[string]error{"stream": stream, "random-access": random, "Verify": verify} {
			if !errors.Is(err, ErrTruncated) {
				t.Errorf("cut to %d of %d bytes: %s read got %v, want ErrTruncated", n, len(data), name, err)
			}
		}
	}
}

func TestBitFlipAtEveryByte(t *testing.T) {
	data := smallArchive(t)
	counts := map[error]int{}
	for i := range data {
		for bit := range 8 {
			bad := append([]byte(nil), data...)
			bad[i] ^= 1 << bit
			stream, random, verify := readEverything(bad)
			for name, err := range map[string]error{"stream": stream, "random-access": random, "Verify": verify} {
				if err == nil || !isSentinel(err) {
					t.Fatalf("bit %d of byte %#x flipped: %s read got %v, want a sentinel error", bit, i, name, err)
				}
			}
			for _, s := range sentinels {
				if errors.Is(stream, s) {
					counts[s]++
				}
			}
		}
	}
	// Most flips land in checksummed bytes; magic flips must say so.
	if counts[ErrChecksum] == 0 || counts[ErrMagic] != 8*8 {
		t.Errorf("stream errors by kind %v: want checksum mismatches and 64 magic errors", counts)
	}
}

func TestWrongMagic(t *testing.T) {
	for _, data := range [][]byte{
		[]byte("PK\x03\x04 this is a zip file, not an archive at all"),
		[]byte("hi"),
		append([]byte("CHSNAQ\x00\x1a"), smallArchive(t)[8:]...),
	} {
		stream, random, verify := readEverything(data)
		for name, err := range map[string]error{"stream": stream, "random-access": random, "Verify": verify} {
			if !errors.Is(err, ErrMagic) {
				t.Errorf("%q: %s read got %v, want ErrMagic", data[:min(len(data), 8)], name, err)
			}
		}
	}
}

func TestTrailingGarbage(t *testing.T) {
	data := append(smallArchive(t), 0)
	if _, err := decode(data); !errors.Is(err, ErrCorrupt) {
		t.Errorf("stream: got %v, want ErrCorrupt", err)
	}
	if _, err := decodeAt(data); !isSentinel(err) {
		t.Errorf("random access: got %v, want a sentinel error", err)
	}
	// A whole second archive appended is refused too.
	data = append(smallArchive(t), smallArchive(t)...)
	if _, err := decode(data); !errors.Is(err, ErrCorrupt) {
		t.Errorf("two archives: got %v, want ErrCorrupt", err)
	}
}

// TestStructuralDamage builds archives whose checksums all match but whose
// structure is wrong: only the structural checks can catch them.
func TestStructuralDamage(t *testing.T) {
	cfg := rawSection{kind: KindConfig, payload: []byte(`{}`)}
	cpu := rawSection{kind: KindVCPU, payload: []byte(`{"a":1}`)}
	huge := uint64(MaxSectionSize + 1)
	tests := []struct {
		name string
		data []byte
	}{
		{"flags-set", rawArchive(rawOpts{major: 1, flags: 1}, cfg)},
		{"section-reserved", rawArchive(rawOpts{major: 1}, cfg, rawSection{kind: KindVCPU, reserved: 1})},
		{"table-id", rawArchive(rawOpts{major: 1, noTable: true}, cfg, rawSection{kind: KindTable, id: 1})},
		{"table-odd-length", rawArchive(rawOpts{major: 1, noTable: true}, rawSection{kind: KindTable, payload: make([]byte, 5)})},
		{"table-missing-entry", rawArchive(rawOpts{major: 1, fixTable: func(e []SectionInfo) []SectionInfo { return e[:1] }}, cfg, cpu)},
		{"table-extra-entry", rawArchive(rawOpts{major: 1, fixTable: func(e []SectionInfo) []SectionInfo { return append(e, e[0]) }}, cfg)},
		{"table-wrong-kind", rawArchive(rawOpts{major: 1, fixTable: func(e []SectionInfo) []SectionInfo { e[1].Kind = KindVM; return e }}, cfg, cpu)},
		{"table-wrong-id", rawArchive(rawOpts{major: 1, fixTable: func(e []SectionInfo) []SectionInfo { e[1].ID = 5; return e }}, cfg, cpu)},
		{"table-wrong-checksum", rawArchive(rawOpts{major: 1, fixTable: func(e []SectionInfo) []SectionInfo { e[0].Checksum++; return e }}, cfg, cpu)},
		{"table-wrong-offset", rawArchive(rawOpts{major: 1, fixTable: func(e []SectionInfo) []SectionInfo { e[1].Offset++; return e }}, cfg, cpu)},
		{"table-lists-itself", rawArchive(rawOpts{major: 1, fixTable: func(e []SectionInfo) []SectionInfo { e[0].Kind = KindTable; return e }}, cfg)},
		{"trailer-count", rawArchive(rawOpts{major: 1, fixTrailer: func(o int64, c uint64) (int64, uint64) { return o, c + 1 }}, cfg)},
		{"trailer-huge-count", rawArchive(rawOpts{major: 1, fixTrailer: func(o int64, c uint64) (int64, uint64) { return o, 1 << 62 }}, cfg)},
		{"trailer-offset", rawArchive(rawOpts{major: 1, fixTrailer: func(o int64, c uint64) (int64, uint64) { return o - 1, c }}, cfg)},
		{"trailer-offset-negative", rawArchive(rawOpts{major: 1, fixTrailer: func(o int64, c uint64) (int64, uint64) { return -1 << 62, c }}, cfg)},
		{"length-over-limit", rawArchive(rawOpts{major: 1, noTable: true}, rawSection{kind: KindMemoryChunk, length: &huge})},
		{"two-tables", append(rawArchive(rawOpts{major: 1, noTable: true}, cfg), rawArchive(rawOpts{major: 1}, cfg)[headerSize:]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decode(tt.data)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("stream: got %v, want ErrCorrupt", err)
			}
			_, errAt := decodeAt(tt.data)
			t.Logf("stream: %v; random access: %v", err, errAt)
			if _, err := Verify(bytes.NewReader(tt.data)); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Verify: got %v, want ErrCorrupt", err)
			}
			if _, err := decodeAt(tt.data); !isSentinel(err) {
				t.Errorf("random access: got %v, want a sentinel error", err)
			}
		})
	}
}

// TestLengthDoesNotAllocate checks that a section header claiming the
// maximum length, with no payload behind it, costs little memory.
func TestLengthDoesNotAllocate(t *testing.T) {
	max := uint64(MaxSectionSize)
	data := rawArchive(rawOpts{major: 1, noTable: true}, rawSection{kind: KindMemoryChunk, length: &max})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := decode(data)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("got %v, want ErrTruncated", err)
	}
	if n, limit := after.TotalAlloc-before.TotalAlloc, uint64(firstPayloadBuf+256<<10); n > limit {
		t.Errorf("reading a %d-byte archive that claims a %d-byte section allocated %d bytes, want at most %d", len(data), max, n, limit)
	}
}
