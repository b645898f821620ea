package formats

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// FuzzReader feeds arbitrary bytes to every reader. For each input it checks
// that nothing panics, that allocation stays proportional to the input,
// that the streaming and random-access readers agree on whether the input
// is a valid archive, that refusals wrap a sentinel error, and that an
// accepted archive re-encodes to exactly the same bytes.
func FuzzReader(f *testing.F) {
	f.Add(encode(f, nil))
	f.Add(encode(f, []Section{{Kind: KindConfig, Payload: []byte(`{"a":1}`)}}))
	f.Add(encode(f, sampleSections()))
	f.Add(encode(f, []Section{{Kind: 0x42, ID: 1, Payload: []byte("x")}, {Kind: KindVM}}))
	f.Add(setVersion(encode(f, sampleSections()), 1, 1))
	if golden, err := os.ReadFile(filepath.Join("testdata", "container-v1.0.chs")); err == nil {
		f.Add(golden)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		all, streamErr := readAllKinds(data)
		runtime.ReadMemStats(&after)
		// The payload buffer grows to at most payloadGrowth+1 times the
		// bytes read, plus the first payload buffer and the read buffer.
		if n, limit := after.TotalAlloc-before.TotalAlloc, (payloadGrowth+2)*uint64(len(data))+firstPayloadBuf+1<<20; n > limit {
			t.Fatalf("reading %d bytes allocated %d, over %d", len(data), n, limit)
		}
		known, nextErr := decode(data)
		_, atErr := decodeAt(data)
		sum, verifyErr := Verify(bytes.NewReader(data))

		if (streamErr == nil) != (nextErr == nil) || (streamErr == nil) != (atErr == nil) || (streamErr == nil) != (verifyErr == nil) {
			t.Fatalf("readers disagree: raw %v, Next %v, random access %v, Verify %v", streamErr, nextErr, atErr, verifyErr)
		}
		if streamErr != nil {
			for _, err := range []error{streamErr, nextErr, atErr, verifyErr} {
				if !isSentinel(err) {
					t.Fatalf("refusal without a sentinel: %v", err)
				}
			}
			return
		}
		var wantKnown []Section
		for _, s := range all {
			if s.Kind.Known() {
				wantKnown = append(wantKnown, s)
			}
		}
		if !sectionsEqual(known, wantKnown) {
			t.Fatalf("Next returned %d sections, want the %d known of %d", len(known), len(wantKnown), len(all))
		}
		if sum.Size != int64(len(data)) || sum.Sections != len(all) {
			t.Fatalf("Verify summary size %d sections %d, want %d and %d", sum.Size, sum.Sections, len(data), len(all))
		}
		// The Writer writes the current version only: an accepted archive of
		// an older minor re-encodes with another header.
		if sum.Minor != FormatMinor {
			return
		}
		if again := encode(t, all); !bytes.Equal(again, data) {
			t.Fatalf("accepted archive of %d bytes re-encodes to %d different bytes", len(data), len(again))
		}
	})
}

// readAllKinds reads every section, unknown kinds included, to io.EOF.
func readAllKinds(data []byte) ([]Section, error) {
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	var out []Section
	for {
		s, err := r.next(true)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
}
