package formats

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

func TestRoundTrip(t *testing.T) {
	many := make([]Section, 300)
	for i := range many {
		p := make([]byte, i*37%1000)
		for j := range p {
			p[j] = byte(i + j)
		}
		many[i] = Section{Kind: KindMemoryChunk, ID: uint32(i), Payload: p}
	}
	// Over smallSection, so the Writer takes its three-write path, and over
	// firstPayloadBuf, so the Reader grows its buffer.
	big := make([]byte, 10*firstPayloadBuf+5)
	for i := range big {
		big[i] = byte(i * 7)
	}
	tests := []struct {
		name     string
		sections []Section
	}{
		{"none", nil},
		{"one", []Section{{Kind: KindConfig, Payload: []byte(`{"a":1}`)}}},
		{"empty-payload", []Section{{Kind: KindVM}, {Kind: KindDevice, ID: 1, Payload: []byte{}}}},
		{"every-kind", sampleSections()},
		{"many", many},
		{"big", []Section{{Kind: KindMemoryChunk, ID: 1, Payload: big}, {Kind: KindMemoryIndex}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := encode(t, tt.sections)
			got, err := decode(data)
			if err != nil {
				t.Fatalf("streaming read: %v", err)
			}
			if !sectionsEqual(got, tt.sections) {
				t.Errorf("streaming read returned %d sections, differing from the %d written", len(got), len(tt.sections))
			}
			got, err = decodeAt(data)
			if err != nil {
				t.Fatalf("random-access read: %v", err)
			}
			if !sectionsEqual(got, tt.sections) {
				t.Errorf("random-access read returned %d sections, differing from the %d written", len(got), len(tt.sections))
			}
			// The size follows from the layout alone.
			want := headerSize + trailerSize + sectionOverhead + len(tt.sections)*(tableEntrySize+sectionOverhead)
			for _, s := range tt.sections {
				want += len(s.Payload)
			}
			if len(data) != want {
				t.Errorf("archive is %d bytes, layout says %d", len(data), want)
			}
		})
	}
}

func TestRoundTripMaxSection(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates several 64 MiB buffers")
	}
	p := make([]byte, MaxSectionSize)
	p[0], p[len(p)-1] = 1, 2
	data := encode(t, []Section{{Kind: KindMemoryChunk, ID: 9, Payload: p}})
	got, err := decode(data)
	if err != nil {
		t.Fatalf("read a section of exactly MaxSectionSize: %v", err)
	}
	if len(got) != 1 || !bytes.Equal(got[0].Payload, p) {
		t.Fatalf("read back %d sections, want the one written", len(got))
	}
	if _, err := Verify(bytes.NewReader(data)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	w, err := NewWriter(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	err = w.WriteSection(KindMemoryChunk, 10, make([]byte, MaxSectionSize+1))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(MaxSectionSize)) {
		t.Fatalf("WriteSection of MaxSectionSize+1 bytes: got %v, want an error naming the limit", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close after a refused section: %v", err)
	}
}

func TestDeterministic(t *testing.T) {
	a := encode(t, sampleSections())
	b := encode(t, sampleSections())
	if !bytes.Equal(a, b) {
		t.Fatal("two writes of the same sections differ")
	}
	// Re-encoding what was read gives the same bytes again.
	got, err := decode(a)
	if err != nil {
		t.Fatal(err)
	}
	if c := encode(t, got); !bytes.Equal(a, c) {
		t.Fatal("re-encoding the sections read gives different bytes")
	}
}

func TestWriterRefuses(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteSection(KindTable, 0, nil); err == nil {
		t.Error("WriteSection(KindTable) succeeded, want refusal")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err == nil {
		t.Error("second Close succeeded, want an error")
	}
	if err := w.WriteSection(KindConfig, 0, nil); err == nil {
		t.Error("WriteSection after Close succeeded, want an error")
	}
	if _, err := decode(buf.Bytes()); err != nil {
		t.Errorf("archive after refused calls does not read: %v", err)
	}
}

// failWriter accepts limit bytes, then fails.
type failWriter struct{ limit int }

var errDisk = errors.New("disk full")

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.limit {
		n := f.limit
		f.limit = 0
		return n, errDisk
	}
	f.limit -= len(p)
	return len(p), nil
}

func TestWriterErrorSticks(t *testing.T) {
	w, err := NewWriter(&failWriter{limit: 40})
	if err != nil {
		t.Fatal(err)
	}
	err = w.WriteSection(KindConfig, 0, []byte("0123456789"))
	if !errors.Is(err, errDisk) {
		t.Fatalf("WriteSection: got %v, want the writer's error", err)
	}
	if w.Written() != 40 {
		t.Errorf("Written() = %d, want the 40 bytes accepted", w.Written())
	}
	if err := w.WriteSection(KindVM, 0, nil); !errors.Is(err, errDisk) {
		t.Errorf("WriteSection after failure: got %v, want the first error", err)
	}
	if err := w.Close(); !errors.Is(err, errDisk) {
		t.Errorf("Close after failure: got %v, want the first error", err)
	}
	if _, err := NewWriter(&failWriter{limit: 3}); !errors.Is(err, errDisk) {
		t.Errorf("NewWriter on a failing writer: got %v, want its error", err)
	}
}

// setVersion rewrites an archive's header version and reseals its checksum.
func setVersion(data []byte, major, minor uint16) []byte {
	out := append([]byte(nil), data...)
	var h [headerSize]byte
	putHeader(&h, major, minor)
	copy(out, h[:])
	return out
}

func TestVersion(t *testing.T) {
	data := encode(t, sampleSections())
	tests := []struct {
		major, minor uint16
		supported    uint16 // the reader's newest minor
		wantErr      error
		wantMsg      string
	}{
		{1, 0, 0, nil, ""},
		{1, 1, 0, ErrVersion, "format 1.1 is newer than supported 1.0"},
		{2, 0, 0, ErrVersion, "format 2.0 is newer than supported 1.0"},
		{0, 9, 0, ErrVersion, "format 0.9 is older than supported major 1"},
		// A reader of 1.3 reads every older minor and refuses 1.4.
		{1, 0, 3, nil, ""},
		{1, 2, 3, nil, ""},
		{1, 3, 3, nil, ""},
		{1, 4, 3, ErrVersion, "format 1.4 is newer than supported 1.3"},
	}
	defer func() { supportedMinor = FormatMinor }()
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d.%d-by-1.%d", tt.major, tt.minor, tt.supported), func(t *testing.T) {
			supportedMinor = tt.supported
			d := setVersion(data, tt.major, tt.minor)
			r, err := NewReader(bytes.NewReader(d))
			_, _, _, errAt := ReadTable(bytes.NewReader(d), int64(len(d)))
			_, errV := Verify(bytes.NewReader(d))
			for name, e := range map[string]error{"NewReader": err, "ReadTable": errAt, "Verify": errV} {
				if !errors.Is(e, tt.wantErr) || (e != nil && !strings.Contains(e.Error(), tt.wantMsg)) {
					t.Errorf("%s: got %v, want %v with %q", name, e, tt.wantErr, tt.wantMsg)
				}
			}
			if err != nil {
				return
			}
			if major, minor := r.Version(); major != tt.major || minor != tt.minor {
				t.Errorf("Version() = %d.%d, want %d.%d", major, minor, tt.major, tt.minor)
			}
		})
	}
}

// TestReadsHandBuilt1_0 reads an archive built without the Writer, from the
// bytes SPEC.md lays down for format 1.0, so the reader cannot drift along
// with the writer.
func TestReadsHandBuilt1_0(t *testing.T) {
	data := rawArchive(rawOpts{major: 1, minor: 0},
		rawSection{kind: KindConfig, payload: []byte(`{"vcpus":1}`)},
		rawSection{kind: KindVCPU, id: 0, payload: []byte(`{}`)})
	got, err := decode(data)
	if err != nil {
		t.Fatalf("read hand-built 1.0 archive: %v", err)
	}
	want := []Section{{Kind: KindConfig, Payload: []byte(`{"vcpus":1}`)}, {Kind: KindVCPU, Payload: []byte(`{}`)}}
	if !sectionsEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	// The Writer writes the current version; built by hand at that version
	// the same sections must give the Writer's bytes exactly.
	current := rawArchive(rawOpts{major: FormatMajor, minor: FormatMinor},
		rawSection{kind: KindConfig, payload: []byte(`{"vcpus":1}`)},
		rawSection{kind: KindVCPU, id: 0, payload: []byte(`{}`)})
	if !bytes.Equal(current, encode(t, want)) {
		t.Errorf("Writer output differs from the hand-built %d.%d archive", FormatMajor, FormatMinor)
	}
}

func TestUnknownKindSkipped(t *testing.T) {
	unknown := SectionKind(0x42)
	in := []Section{
		{Kind: KindConfig, Payload: []byte(`{}`)},
		{Kind: unknown, ID: 7, Payload: []byte("from a newer minor")},
		{Kind: KindVCPU, ID: 0, Payload: []byte(`{}`)},
	}
	data := encode(t, in)
	got, err := decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Section{in[0], in[2]}; !sectionsEqual(got, want) {
		t.Errorf("Next returned %+v, want the two known sections", got)
	}
	_, _, table, err := ReadTable(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if len(table) != 3 || table[1].Kind != unknown || table[1].ID != 7 {
		t.Errorf("ReadTable listed %+v, want all three sections", table)
	}
	sum, err := Verify(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sections != 3 || len(sum.Kinds) != 3 || sum.Kinds[2].Kind != unknown || sum.Kinds[2].Known || sum.Kinds[2].Name != "kind-0x42" {
		t.Errorf("Verify summary %+v, want 3 sections with kind 0x42 unknown", sum)
	}
	// A bad checksum in a skipped section is still an error.
	bad := append([]byte(nil), data...)
	bad[int(table[1].Offset)+sectionHeaderSize] ^= 1
	if _, err := decode(bad); !errors.Is(err, ErrChecksum) {
		t.Errorf("damaged unknown section: got %v, want ErrChecksum", err)
	}
}

func TestSectionKindString(t *testing.T) {
	want := map[SectionKind]string{
		KindConfig: "config", KindVCPU: "vcpu", KindVM: "vm", KindDevice: "device",
		KindHostResource: "host-resource", KindMemoryIndex: "memory-index",
		KindMemoryChunk: "memory-chunk", KindTable: "table", 0: "kind-0x0", 8: "kind-0x8",
	}
	for k, s := range want {
		if got := k.String(); got != s {
			t.Errorf("SectionKind(%d).String() = %q, want %q", uint32(k), got, s)
		}
		if known := !strings.HasPrefix(s, "kind-"); k.Known() != known {
			t.Errorf("SectionKind(%d).Known() = %v, want %v", uint32(k), k.Known(), known)
		}
	}
}

func TestErrorNamesSectionAndOffset(t *testing.T) {
	data := encode(t, sampleSections())
	_, _, table, err := ReadTable(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	e := table[6] // memory-chunk 12
	bad := append([]byte(nil), data...)
	bad[int(e.Offset)+sectionHeaderSize+3] ^= 0x80
	_, err = decode(bad)
	want := fmt.Sprintf("formats: section 6 (memory-chunk 12) at offset %#x: checksum mismatch", e.Offset)
	if !errors.Is(err, ErrChecksum) || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v, want ErrChecksum with message starting %q", err, want)
	}
	_, err = ReadSectionAt(bytes.NewReader(bad), e)
	want = fmt.Sprintf("formats: section memory-chunk 12 at offset %#x: checksum mismatch", e.Offset)
	if !errors.Is(err, ErrChecksum) || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("ReadSectionAt: got %v, want ErrChecksum with message starting %q", err, want)
	}
}

func TestVerifySummary(t *testing.T) {
	in := sampleSections()
	data := encode(t, in)
	sum, err := Verify(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	wantVersion := fmt.Sprintf("%d.%d", FormatMajor, FormatMinor)
	if sum.Version != wantVersion || sum.Major != FormatMajor || sum.Minor != FormatMinor || sum.Size != int64(len(data)) || sum.Sections != len(in) {
		t.Errorf("summary %+v: want version %s, size %d, %d sections", sum, wantVersion, len(data), len(in))
	}
	var payload uint64
	counts := map[SectionKind]int{}
	bytesBy := map[SectionKind]uint64{}
	for _, s := range in {
		payload += uint64(len(s.Payload))
		counts[s.Kind]++
		bytesBy[s.Kind] += uint64(len(s.Payload))
	}
	if sum.PayloadBytes != payload {
		t.Errorf("PayloadBytes = %d, want %d", sum.PayloadBytes, payload)
	}
	if len(sum.Kinds) != len(counts) {
		t.Fatalf("%d kinds in summary, want %d", len(sum.Kinds), len(counts))
	}
	for i, k := range sum.Kinds {
		if i > 0 && sum.Kinds[i-1].Kind >= k.Kind {
			t.Errorf("kinds not in ascending order: %v before %v", sum.Kinds[i-1].Kind, k.Kind)
		}
		if k.Count != counts[k.Kind] || k.Bytes != bytesBy[k.Kind] || k.Name != k.Kind.String() || !k.Known {
			t.Errorf("kind %s: %+v, want count %d bytes %d", k.Kind, k, counts[k.Kind], bytesBy[k.Kind])
		}
	}
	js, err := json.Marshal(sum)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(js, []byte(`"name":"memory-chunk"`)) || !bytes.Contains(js, []byte(`"format_version":"`+wantVersion+`"`)) {
		t.Errorf("summary JSON %s lacks kind names or version", js)
	}
	// On damage Verify reports what it read and the error.
	bad := append([]byte(nil), data...)
	bad[len(bad)-40] ^= 1 // inside the table's checksum
	sum, err = Verify(bytes.NewReader(bad))
	if !errors.Is(err, ErrChecksum) || sum.Sections != len(in) {
		t.Errorf("damaged table: got %d sections and %v, want %d and ErrChecksum", sum.Sections, err, len(in))
	}
}

// errReader returns data, then a non-EOF error.
type errReader struct {
	data []byte
	err  error
}

func (e *errReader) Read(p []byte) (int, error) {
	if len(e.data) == 0 {
		return 0, e.err
	}
	n := copy(p, e.data)
	e.data = e.data[n:]
	return n, nil
}

func TestReaderPassesIOErrors(t *testing.T) {
	data := encode(t, sampleSections())
	errIO := errors.New("connection reset")
	for _, n := range []int{10, 40, 100, len(data) - 5, len(data)} {
		r, err := NewReader(&errReader{data: data[:n], err: errIO})
		for err == nil {
			_, err = r.Next()
		}
		if !errors.Is(err, errIO) || isSentinel(err) {
			t.Errorf("I/O error after %d bytes: got %v, want the reader's error and no sentinel", n, err)
		}
	}
}

func TestGolden(t *testing.T) {
	want := sampleSections()
	path := filepath.Join("testdata", "container-v1.0.chs")
	if *update {
		if FormatMajor != 1 || FormatMinor != 0 {
			t.Fatalf("refusing to rewrite %s with format %d.%d: golden archives of released versions never change", path, FormatMajor, FormatMinor)
		}
		if err := os.WriteFile(path, encode(t, want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decode(data)
	if err != nil {
		t.Fatalf("read golden %s: %v", path, err)
	}
	if !sectionsEqual(got, want) {
		t.Errorf("golden %s holds %+v, want %+v", path, got, want)
	}
	if FormatMajor == 1 && FormatMinor == 0 && !bytes.Equal(data, encode(t, want)) {
		t.Errorf("Writer no longer reproduces %s byte for byte", path)
	}
}

func TestRandomRoundTrips(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		n := rng.IntN(6)
		secs := make([]Section, n)
		for j := range secs {
			p := make([]byte, rng.IntN(300))
			for k := range p {
				p[k] = byte(rng.Uint32())
			}
			secs[j] = Section{Kind: SectionKind(1 + rng.IntN(7)), ID: rng.Uint32(), Payload: p}
		}
		data := encode(t, secs)
		got, err := decode(data)
		if err != nil || !sectionsEqual(got, secs) {
			t.Fatalf("case %d: read back %d sections, err %v; want %d", i, len(got), err, n)
		}
	}
}

func TestReaderSlowAndEagerSources(t *testing.T) {
	in := sampleSections()
	data := encode(t, in)
	sources := map[string]func() io.Reader{
		"one-byte":     func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) },
		"half":         func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
		"data-and-eof": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) },
	}
	for name, src := range sources {
		t.Run(name, func(t *testing.T) {
			r, err := NewReader(src())
			if err != nil {
				t.Fatal(err)
			}
			var got []Section
			for {
				s, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, s)
			}
			if !sectionsEqual(got, in) {
				t.Errorf("read %d sections, want the %d written", len(got), len(in))
			}
			if sum, err := Verify(src()); err != nil || sum.Size != int64(len(data)) {
				t.Errorf("Verify: size %d, %v; want %d, nil", sum.Size, err, len(data))
			}
		})
	}
}
