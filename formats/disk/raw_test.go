package disk

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestRaw(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "disk.raw")
	orig := pattern(11, 1<<20)
	if err := os.WriteFile(p, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Open(p, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Size() != 1<<20 || d.ReadOnly() {
		t.Fatalf("Size() = %d, ReadOnly() = %v; want %d, false", d.Size(), d.ReadOnly(), 1<<20)
	}
	id := d.Identity()
	if id.Format != FormatRaw || id.Size != 1<<20 || id.Inode == 0 || len(id.HeaderDigest) != 64 {
		t.Errorf("Identity() = %+v", id)
	}
	patch := bytes.Repeat([]byte{0xcd}, 3000)
	if _, err := d.WriteAt(patch, 5000); err != nil {
		t.Fatal(err)
	}
	copy(orig[5000:], patch)
	if diff := firstDiff(readAll(t, d, 4096), orig); diff != "" {
		t.Fatal(diff)
	}
	// Past the end: reads return what fits and io.EOF, writes are refused.
	buf := make([]byte, 100)
	if n, err := d.ReadAt(buf, 1<<20-40); n != 40 || err != io.EOF {
		t.Errorf("ReadAt across the end = %d, %v; want 40, io.EOF", n, err)
	}
	if _, err := d.WriteAt(buf, 1<<20-40); !errors.Is(err, ErrRange) {
		t.Errorf("WriteAt across the end: %v, want ErrRange", err)
	}
	if _, err := d.ReadAt(buf, -1); !errors.Is(err, ErrRange) {
		t.Errorf("ReadAt at -1: %v, want ErrRange", err)
	}
	// Discard punches a hole that reads as zeros (tmpfs and ext4 both can);
	// the size stays.
	if err := d.Discard(64<<10, 128<<10); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, d, 1<<20)
	if !bytes.Equal(got[64<<10:192<<10], make([]byte, 128<<10)) {
		t.Error("discarded range does not read as zeros")
	}
	if !bytes.Equal(got[:64<<10], orig[:64<<10]) || !bytes.Equal(got[192<<10:], orig[192<<10:]) {
		t.Error("discard changed bytes outside its range")
	}
	if err := d.Discard(1<<20-10, 20); !errors.Is(err, ErrRange) {
		t.Errorf("Discard across the end: %v, want ErrRange", err)
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
	if _, err := d.ReadAt(buf, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAt after Close: %v, want ErrClosed", err)
	}

	// Read-only: writes and discards refused, identity unchanged.
	d, err = Open(p, OpenOptions{Format: FormatRaw, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.WriteAt(buf, 0); !errors.Is(err, ErrReadOnly) {
		t.Errorf("WriteAt on read-only: %v, want ErrReadOnly", err)
	}
	if err := d.Discard(0, 512); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Discard on read-only: %v, want ErrReadOnly", err)
	}
	if d.Identity() != id {
		t.Errorf("Identity changed across opens: %+v vs %+v", d.Identity(), id)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing"), OpenOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing): %v, want ErrNotExist", err)
	}
	p := filepath.Join(dir, "x")
	os.WriteFile(p, []byte("QFI\xfbjunk"), 0o644)
	if _, err := Open(p, OpenOptions{}); !errors.Is(err, ErrFormat) {
		t.Errorf("Open(magic then junk): %v, want ErrFormat", err)
	}
	if _, err := Open(p, OpenOptions{Format: "vmdk"}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Open(format vmdk): %v, want ErrUnsupported", err)
	}
	// A short file without the magic is a (tiny) raw disk.
	os.WriteFile(p, []byte("ab"), 0o644)
	d, err := Open(p, OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Identity().Format != FormatRaw || d.Size() != 2 {
		t.Errorf("tiny file: %+v", d.Identity())
	}
}

// TestQcow2Identity checks that the digest survives writes and metadata
// growth but differs between images.
func TestQcow2Identity(t *testing.T) {
	needQemu(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.qcow2"), filepath.Join(dir, "b.qcow2")
	run(t, "qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=512", a, "4M")
	run(t, "qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=512", b, "8M")
	d, err := Open(a, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before := d.Identity()
	if _, err := d.WriteAt(make([]byte, 3<<20), 0); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d, _ = Open(a, OpenOptions{ReadOnly: true})
	after := d.Identity()
	d.Close()
	if before != after {
		t.Errorf("identity changed by writes: %+v → %+v", before, after)
	}
	d, _ = Open(b, OpenOptions{ReadOnly: true})
	other := d.Identity()
	d.Close()
	if other.HeaderDigest == before.HeaderDigest || other.Inode == before.Inode {
		t.Errorf("two images share identity: %+v, %+v", before, other)
	}
	if _, err := d.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAt after Close: %v, want ErrClosed", err)
	}
}
