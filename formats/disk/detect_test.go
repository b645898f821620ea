package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestBackingFormatDetected removes the backing-format extension (by
// renaming its type to one we do not know, which must be skipped) so the
// backing file's format is found from its magic.
func TestBackingFormatDetected(t *testing.T) {
	needQemu(t)
	for _, baseFmt := range []string{"raw", "qcow2"} {
		t.Run(baseFmt, func(t *testing.T) {
			dir := t.TempDir()
			base := filepath.Join(dir, "base."+baseFmt)
			run(t, "qemu-img", "create", "-f", baseFmt, base, "1M")
			if baseFmt == "raw" {
				os.WriteFile(base, bytes.Repeat([]byte{0x3c}, 1<<20), 0o644)
			} else {
				qemuIO(t, base, "write -P 0x3c 0 1M")
			}
			img := filepath.Join(dir, "top.qcow2")
			run(t, "qemu-img", "create", "-f", "qcow2", "-b", filepath.Base(base), "-F", baseFmt, img, "1M")
			qemuIO(t, img, "write -P 0x01 4096 100")
			b, _ := os.ReadFile(img)
			off := binary.BigEndian.Uint32(b[100:]) // header length: extensions follow
			found := false
			for int(off)+8 <= len(b) {
				typ, n := binary.BigEndian.Uint32(b[off:]), binary.BigEndian.Uint32(b[off+4:])
				if typ == extEnd {
					break
				}
				if typ == extBackingFormat {
					binary.BigEndian.PutUint32(b[off:], 0x12345678)
					found = true
				}
				off += 8 + (n+7)&^7
			}
			if !found {
				t.Fatal("qemu-img wrote no backing format extension")
			}
			os.WriteFile(img, b, 0o644)
			d, err := Open(img, OpenOptions{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			want := bytes.Repeat([]byte{0x3c}, 1<<20)
			copy(want[4096:], bytes.Repeat([]byte{0x01}, 100))
			if diff := firstDiff(readAll(t, d, 1<<20), want); diff != "" {
				t.Fatal(diff)
			}
		})
	}
}

// TestQcow2Errors covers refused writes and use after Close.
func TestQcow2Errors(t *testing.T) {
	needQemu(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "e.qcow2")
	run(t, "qemu-img", "create", "-f", "qcow2", img, "1M")
	d, err := Open(img, OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if !d.ReadOnly() {
		t.Error("ReadOnly() = false for a read-only open")
	}
	if _, err := d.WriteAt([]byte{1}, 0); !errors.Is(err, ErrReadOnly) {
		t.Errorf("WriteAt on read-only: %v, want ErrReadOnly", err)
	}
	d.Close()
	d, err = Open(img, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(make([]byte, 10), 1<<20-5); !errors.Is(err, ErrRange) {
		t.Errorf("WriteAt across the end: %v, want ErrRange", err)
	}
	if err := d.Discard(1<<20-5, 10); !errors.Is(err, ErrRange) {
		t.Errorf("Discard across the end: %v, want ErrRange", err)
	}
	buf := make([]byte, 10)
	if n, err := d.ReadAt(buf, 1<<20-5); n != 5 || err == nil {
		t.Errorf("ReadAt across the end = %d, %v; want 5 and io.EOF", n, err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
	if _, err := d.WriteAt(buf, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteAt after Close: %v, want ErrClosed", err)
	}
	// A missing backing file is named in the error.
	top := filepath.Join(dir, "orphan.qcow2")
	run(t, "qemu-img", "create", "-f", "qcow2", "-u", "-b", "gone.raw", "-F", "raw", top, "1M")
	if _, err := Open(top, OpenOptions{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) || !bytes.Contains([]byte(err.Error()), []byte(filepath.Join(dir, "gone.raw"))) {
		t.Errorf("Open with a missing backing file: %v", err)
	}
}
