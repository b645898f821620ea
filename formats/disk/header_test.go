package disk

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestQcow2BadHeaders damages a real image's header in one field at a time
// and checks that Open refuses it with the right sentinel and a message
// naming the field.
func TestQcow2BadHeaders(t *testing.T) {
	needQemu(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.qcow2")
	run(t, "qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=65536", good, "64M")
	qemuIO(t, good, "write -P 0x42 0 128k")
	orig, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	put32 := func(off int, v uint32) func([]byte) []byte {
		return func(b []byte) []byte { binary.BigEndian.PutUint32(b[off:], v); return b }
	}
	put64 := func(off int, v uint64) func([]byte) []byte {
		return func(b []byte) []byte { binary.BigEndian.PutUint64(b[off:], v); return b }
	}
	cases := []struct {
		name   string
		damage func([]byte) []byte
		want   error
		text   string
	}{
		{"truncated-header", func(b []byte) []byte { return b[:50] }, ErrFormat, "truncated"},
		{"truncated-v3-header", func(b []byte) []byte { return b[:90] }, ErrFormat, "truncated"},
		{"version-1", put32(4, 1), ErrUnsupported, "version 1"},
		{"version-4", put32(4, 4), ErrUnsupported, "version 4"},
		{"cluster-bits-8", put32(20, 8), ErrFormat, "cluster_bits 8"},
		{"cluster-bits-22", put32(20, 22), ErrFormat, "cluster_bits 22"},
		{"encrypted", put32(32, 1), ErrUnsupported, "encryption"},
		{"l1-too-small", put32(36, 0), ErrFormat, "l1_size 0"},
		{"l1-past-eof", put64(40, 1<<40), ErrFormat, "L1 table"},
		{"l1-unaligned", put64(40, 0x30008), ErrFormat, "L1 table"},
		{"l1-huge", put32(36, 1<<30), ErrUnsupported, "l1_size"},
		{"reftable-zero", put64(48, 0), ErrFormat, "refcount table"},
		{"reftable-past-eof", put32(56, 100), ErrFormat, "refcount table"},
		{"reftable-huge", put32(56, 1000), ErrUnsupported, "refcount table"},
		{"dirty", put64(72, incompatDirty), ErrUnsupported, "dirty"},
		{"corrupt", put64(72, incompatCorrupt), ErrUnsupported, "corrupt"},
		{"external-data", put64(72, incompatExternalData), ErrUnsupported, "external data"},
		{"extended-l2", put64(72, incompatExtendedL2), ErrUnsupported, "extended L2"},
		{"unknown-incompat", put64(72, 1<<20), ErrUnsupported, "unknown incompatible"},
		{"zstd", func(b []byte) []byte { put64(72, incompatCompressionTyp)(b); b[104] = 1; return b }, ErrUnsupported, "compression type 1"},
		{"refcount-order-7", put32(96, 7), ErrFormat, "refcount_order 7"},
		{"header-length-odd", put32(100, 105), ErrFormat, "header length"},
		{"header-length-huge", put32(100, 1<<20), ErrFormat, "header length"},
		{"virtual-size-huge", put64(24, 1<<63), ErrFormat, "virtual size"},
		{"backing-name-outside", func(b []byte) []byte { put64(8, 65530)(b); return put32(16, 100)(b) }, ErrFormat, "backing file name"},
		{"backing-name-too-long", func(b []byte) []byte { put64(8, 512)(b); return put32(16, 5000)(b) }, ErrFormat, "backing file name"},
		{"extension-overrun", func(b []byte) []byte {
			off := int(binary.BigEndian.Uint32(b[100:]))
			put32(off, extBackingFormat)(b)
			return put32(off+4, 1<<30)(b)
		}, ErrFormat, "header extension"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.qcow2")
			b := make([]byte, len(orig))
			copy(b, orig)
			if err := os.WriteFile(p, tc.damage(b), 0o644); err != nil {
				t.Fatal(err)
			}
			d, err := Open(p, OpenOptions{Format: FormatQcow2, ReadOnly: true})
			if err == nil {
				d.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v is not %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name %q and the path", err, tc.text)
			}
		})
	}
	// A damaged L2 pointer is found on read, not on open.
	t.Run("l2-unaligned", func(t *testing.T) {
		b := make([]byte, len(orig))
		copy(b, orig)
		l1 := binary.BigEndian.Uint64(b[40:])
		binary.BigEndian.PutUint64(b[l1:], copiedFlag|0x10200)
		p := filepath.Join(t.TempDir(), "bad.qcow2")
		os.WriteFile(p, b, 0o644)
		d, err := Open(p, OpenOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if _, err := d.ReadAt(make([]byte, 512), 0); !errors.Is(err, ErrFormat) {
			t.Errorf("ReadAt through an unaligned L2 table: %v, want ErrFormat", err)
		}
	})
	// Writable open needs 16-bit refcounts.
	t.Run("refcount-order-write", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "r.qcow2")
		run(t, "qemu-img", "create", "-f", "qcow2", "-o", "refcount_bits=8", p, "1M")
		if d, err := Open(p, OpenOptions{}); !errors.Is(err, ErrUnsupported) {
			if d != nil {
				d.Close()
			}
			t.Errorf("writable open with refcount_bits=8: %v, want ErrUnsupported", err)
		}
		d, err := Open(p, OpenOptions{ReadOnly: true})
		if err != nil {
			t.Fatalf("read-only open with refcount_bits=8: %v", err)
		}
		d.Close()
	})
}
