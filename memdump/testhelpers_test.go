package memdump

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/chsnap/chsnap/formats"
)

// newTestMemory returns size bytes of fresh RAM, closed at the end of the test.
func newTestMemory(tb testing.TB, size uint64) *Memory {
	tb.Helper()
	m, err := New("memdump-test", size)
	if err != nil {
		tb.Fatalf("New(%d): %v", size, err)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

// pageKind says how fillPages fills one page.
type pageKind int

const (
	pageZero pageKind = iota
	pageRandom
	pageText
)

// textBlock is 64 KiB of word salad: it compresses about like English text
// or source code, which is the "text-like" part of the benchmark mix.
var textBlock = func() []byte {
	words := []string{"the", "guest", "kernel", "page", "memory", "snapshot", "restore", "chunk",
		"func", "return", "err", "nil", "if", "for", "struct", "int", "of", "and", "to", "a",
		"interrupt", "virtio", "queue", "descriptor", "buffer", "device", "vcpu", "timer", "tick"}
	r := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	for b.Len() < 64<<10 {
		b.WriteString(words[r.IntN(len(words))])
		switch r.IntN(12) {
		case 0:
			b.WriteString(".\n")
		case 1:
			b.WriteString(", ")
		default:
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:64<<10]
}()

// fillPages fills every page of RAM (by memfd offset) with the kind that
// kind(page number) returns, from a generator seeded with seed.
func fillPages(m *Memory, seed uint64, kind func(pg int) pageKind) {
	r := rand.New(rand.NewPCG(seed, 7))
	cc := rand.NewChaCha8([32]byte{byte(seed), 1, 2, 3})
	data := m.Bytes()
	for pg := 0; pg*PageSize < len(data); pg++ {
		p := data[pg*PageSize : (pg+1)*PageSize]
		switch kind(pg) {
		case pageZero:
			clear(p)
		case pageRandom:
			cc.Read(p)
		case pageText:
			off := r.IntN(len(textBlock) - PageSize)
			copy(p, textBlock[off:off+PageSize])
		}
	}
}

// mixKind is the benchmark mix: half zero pages, a quarter
// text-like, a quarter random, spread over RAM by a fixed pseudo-random
// choice per page.
func mixKind(pg int) pageKind {
	h := uint64(pg)*0x9E3779B97F4A7C15 + 0x12345
	h ^= h >> 29
	switch h % 4 {
	case 0, 1:
		return pageZero
	case 2:
		return pageText
	}
	return pageRandom
}

// dumpArchive dumps m into a complete archive and returns its bytes.
func dumpArchive(tb testing.TB, m *Memory, opt DumpOptions) ([]byte, DumpStats) {
	tb.Helper()
	var buf bytes.Buffer
	w, err := formats.NewWriter(&buf)
	if err != nil {
		tb.Fatal(err)
	}
	st, err := Dump(m, w, opt)
	if err != nil {
		tb.Fatalf("Dump: %v", err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes(), st
}

// readSections returns the verified sections of an archive.
func readSections(tb testing.TB, archive []byte) []formats.Section {
	tb.Helper()
	r, err := formats.NewReader(bytes.NewReader(archive))
	if err != nil {
		tb.Fatal(err)
	}
	var out []formats.Section
	for {
		s, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			tb.Fatalf("read archive: %v", err)
		}
		out = append(out, s)
	}
}

// loadSections feeds sections to a Loader over m and finishes it.
func loadSections(m *Memory, secs []formats.Section, opt LoadOptions) (DumpStats, error) {
	l := NewLoader(m, opt)
	for _, s := range secs {
		if err := l.Add(s); err != nil {
			l.Finish()
			return DumpStats{}, err
		}
	}
	return l.Finish()
}

// cloneSections deep-copies sections so a test can corrupt one copy.
func cloneSections(secs []formats.Section) []formats.Section {
	out := make([]formats.Section, len(secs))
	for i, s := range secs {
		out[i] = formats.Section{Kind: s.Kind, ID: s.ID, Payload: bytes.Clone(s.Payload)}
	}
	return out
}

// sectionOf returns the index in secs of the section kind/id, or fails.
func sectionOf(tb testing.TB, secs []formats.Section, kind formats.SectionKind, id uint32) int {
	tb.Helper()
	for i, s := range secs {
		if s.Kind == kind && s.ID == id {
			return i
		}
	}
	tb.Fatalf("no section %s %d", kind, id)
	return -1
}

// dataRuns returns the data runs of m's memfd range [off, off+n).
func (m *Memory) dataRuns(off, n int64, dst [][2]int64) [][2]int64 {
	return newHoleScanner(m).runs(off, n, dst)
}
