package formats

import (
	"bytes"
	"io"
	"testing"
)

// benchSections is a 64 MiB archive's content: 32 memory-chunk sections of
// 2 MiB, the size memdump writes.
func benchSections() []Section {
	const chunk = 2 << 20
	secs := make([]Section, 32)
	for i := range secs {
		p := make([]byte, chunk)
		for j := 0; j < len(p); j += 4096 {
			p[j] = byte(i)
		}
		secs[i] = Section{Kind: KindMemoryChunk, ID: uint32(i), Payload: p}
	}
	return secs
}

func payloadBytes(secs []Section) int64 {
	var n int64
	for _, s := range secs {
		n += int64(len(s.Payload))
	}
	return n
}

func BenchmarkWrite64MiB(b *testing.B) {
	secs := benchSections()
	b.SetBytes(payloadBytes(secs))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w, err := NewWriter(io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		for _, s := range secs {
			if err := w.WriteSection(s.Kind, s.ID, s.Payload); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRead64MiB(b *testing.B) {
	secs := benchSections()
	data := encode(b, secs)
	b.SetBytes(payloadBytes(secs))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		got, err := decode(data)
		if err != nil || len(got) != len(secs) {
			b.Fatalf("read %d sections: %v", len(got), err)
		}
	}
}

func BenchmarkVerify64MiB(b *testing.B) {
	secs := benchSections()
	data := encode(b, secs)
	b.SetBytes(payloadBytes(secs))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Verify(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}
