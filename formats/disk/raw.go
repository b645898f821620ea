package disk

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// raw is a raw image: virtual offset equals file offset.
type raw struct {
	f        *os.File
	path     string
	size     uint64
	readOnly bool
	id       Identity
	closed   atomic.Bool
}

// newRaw takes ownership of f. The size is the file's (or the block
// device's) length at open time.
func newRaw(f *os.File, path string, readOnly bool, dev, ino uint64) (*raw, error) {
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("raw size: %w", err)
	}
	r := &raw{f: f, path: path, size: uint64(end), readOnly: readOnly}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], r.size)
	sum := sha256.Sum256(append([]byte("raw\x00"), b[:]...))
	r.id = Identity{Dev: dev, Inode: ino, Format: FormatRaw, Size: r.size, HeaderDigest: hex.EncodeToString(sum[:])}
	return r, nil
}

// ReadAt implements Disk.
func (r *raw) ReadAt(p []byte, off int64) (int, error) {
	if r.closed.Load() {
		return 0, ErrClosed
	}
	n, rerr := checkRange(off, len(p), r.size)
	if n == 0 {
		return 0, rerr
	}
	m, err := r.f.ReadAt(p[:n], off)
	if err == io.EOF {
		// The file shrank under us; what is missing reads as zeros.
		clear(p[m:n])
		m, err = n, nil
	}
	if err != nil {
		return m, fmt.Errorf("read %s at %d: %w", r.path, off, err)
	}
	return m, rerr
}

// WriteAt implements Disk.
func (r *raw) WriteAt(p []byte, off int64) (int, error) {
	if r.closed.Load() {
		return 0, ErrClosed
	}
	if r.readOnly {
		return 0, fmt.Errorf("write %s: %w", r.path, ErrReadOnly)
	}
	if n, err := checkRange(off, len(p), r.size); err != nil || n != len(p) {
		return 0, fmt.Errorf("write %s: %d bytes at %d: %w (size %d)", r.path, len(p), off, ErrRange, r.size)
	}
	n, err := r.f.WriteAt(p, off)
	if err != nil {
		return n, fmt.Errorf("write %s at %d: %w", r.path, off, err)
	}
	return n, nil
}

// Size implements Disk.
func (r *raw) Size() uint64 { return r.size }

// Flush implements Disk.
func (r *raw) Flush() error {
	if r.closed.Load() {
		return ErrClosed
	}
	if r.readOnly {
		return nil
	}
	if err := r.f.Sync(); err != nil {
		return fmt.Errorf("flush %s: %w", r.path, err)
	}
	return nil
}

// Discard punches a hole (keeping the size), so the range reads as zeros.
// A file system that cannot punch holes makes it a no-op.
func (r *raw) Discard(off, n int64) error {
	if r.closed.Load() {
		return ErrClosed
	}
	if r.readOnly {
		return fmt.Errorf("discard %s: %w", r.path, ErrReadOnly)
	}
	if off < 0 || n < 0 || uint64(off) > r.size || uint64(n) > r.size-uint64(off) {
		return fmt.Errorf("discard %s: %d bytes at %d: %w (size %d)", r.path, n, off, ErrRange, r.size)
	}
	if n == 0 {
		return nil
	}
	err := unix.Fallocate(int(r.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ENODEV) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("discard %s: fallocate: %w", r.path, err)
	}
	return nil
}

// Close implements Disk.
func (r *raw) Close() error {
	if r.closed.Swap(true) {
		return ErrClosed
	}
	if err := r.f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", r.path, err)
	}
	return nil
}

// ReadOnly implements Disk.
func (r *raw) ReadOnly() bool { return r.readOnly }

// Identity implements Disk.
func (r *raw) Identity() Identity { return r.id }
