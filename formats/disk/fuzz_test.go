package disk

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// memFile is an in-memory backend that refuses to grow past a limit.
type memFile struct {
	b     []byte
	limit int
}

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(m.b)) {
		return 0, errEOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, errEOF
	}
	return n, nil
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(m.limit) {
		return 0, errors.New("memfile: write past the test limit")
	}
	if end := int(off) + len(p); end > len(m.b) {
		m.b = append(m.b, make([]byte, end-len(m.b))...)
	}
	return copy(m.b[off:], p), nil
}

func (m *memFile) Sync() error { return nil }

func (m *memFile) Truncate(size int64) error {
	if size < 0 || size > int64(m.limit) {
		return errors.New("memfile: truncate past the test limit")
	}
	if int(size) > len(m.b) {
		m.b = append(m.b, make([]byte, int(size)-len(m.b))...)
	}
	m.b = m.b[:size]
	return nil
}

func (m *memFile) Close() error { return nil }

// FuzzQcow2Header feeds arbitrary bytes to the qcow2 header, extension and
// L1/L2/refcount table parsing, then reads through the tables and writes a
// little. It checks for no panic, allocation bounded by the input (a 4 MiB
// growth cap on writes), and that bytes written read back.
func FuzzQcow2Header(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.qcow2")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 256<<10 {
			return
		}
		m := &memFile{b: bytes.Clone(data), limit: len(data) + 4<<20}
		q, err := openQcow2(m, uint64(len(data)), "fuzz.qcow2", true, nil)
		if err != nil {
			return
		}
		buf := make([]byte, 3000)
		size := q.Size()
		for i := range uint64(8) {
			q.ReadAt(buf, int64(size/8*i))
		}
		q.Close()

		m = &memFile{b: bytes.Clone(data), limit: len(data) + 4<<20}
		w, err := openQcow2(m, uint64(len(data)), "fuzz.qcow2", false, nil)
		if err != nil {
			return
		}
		defer w.Close()
		for i := range buf {
			buf[i] = byte(i)
		}
		off := int64(size / 3)
		if uint64(off)+uint64(len(buf)) > size {
			return
		}
		if _, err := w.WriteAt(buf, off); err != nil {
			return
		}
		got := make([]byte, len(buf))
		if _, err := w.ReadAt(got, off); err != nil {
			t.Fatalf("read after a successful write: %v", err)
		}
		if !bytes.Equal(got, buf) {
			t.Fatalf("read after write differs: %s", firstDiff(got, buf))
		}
	})
}

var errEOF = io.EOF
