// Package disk opens the disk images chsnap hands to virtio-blk: raw files
// (and block devices) and qcow2 images, versions 2 and 3, with backing
// chains. It is pure Go over the standard library and x/sys/unix: no KVM,
// no device code; the virtio-blk model receives a Disk and knows nothing of
// the format underneath.
//
// # qcow2
//
// The qcow2 code follows QEMU's docs/interop/qcow2.txt. What it does:
//
//   - reads versions 2 and 3, any cluster size from 512 B to 2 MiB
//     (cluster_bits 9..21), any refcount_order 0..6;
//   - reads unallocated clusters from the backing file (or as zeros past
//     its end or without one), zero clusters (v3 L2 bit 0) as zeros, and
//     compressed clusters by inflating their raw deflate stream;
//   - writes images with refcount_order 4 (16-bit refcounts, the only
//     order QEMU creates by default and the only one v2 has) and no
//     internal snapshots; other images open read-only only;
//   - discards (v3) by giving whole clusters the zero flag, keeping their
//     host clusters allocated; v2 has no zero flag, so discard is a no-op;
//   - refuses images with the dirty, corrupt, external-data-file or
//     extended-L2 incompatible bits, any unknown incompatible bit, a
//     compression type other than deflate, or encryption.
//
// Allocation is append-only: every new cluster (data, L2 table, refcount
// block, refcount table) is taken at the end of the file, so nothing that
// is referenced is ever overwritten by an allocation. A write that needs
// new clusters is issued in this order:
//
//  1. the refcount of each new cluster (refcount block entry, and a new
//     refcount block and refcount table entry when the block did not exist),
//  2. the data cluster (the whole cluster: copy-on-write fills the rest
//     from the backing file, a decompressed cluster, or zeros),
//  3. the L2 entry (or a whole new L2 table),
//  4. the L1 entry when the L2 table is new.
//
// A crash between any two steps leaves clusters whose refcount is 1 but
// that nothing references: leaks, which `qemu-img check -r leaks` repairs,
// never a reference to an unowned cluster. The order is the order of
// issue; the kernel may reorder unsynced writes, so the guarantee holds
// across a host crash only for writes followed by Flush (fsync), as with
// any disk that has a volatile write cache. Growing the refcount table
// writes the new table in full before one 12-byte header write switches
// to it; the old table's clusters are then freed (refcount 0).
//
// # Backing chains
//
// A backing file name is resolved relative to the directory of the image
// that names it (an absolute name is used as is). Its format comes from
// the backing-format header extension or, when absent, from its magic.
// Backing files are always opened read-only. A chain may hold at most
// MaxBackingChain backing files below the top image, and a file that
// appears twice in a chain (same device and inode) is a loop; both are
// refused with an error that names the whole chain.
package disk

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Disk is an open disk image as virtio-blk sees it: a fixed-size array of
// bytes with a volatile write cache. Methods are safe for concurrent use.
// The Disk owns its file descriptors (and those of its backing chain) and
// closes them in Close.
type Disk interface {
	// ReadAt reads len(p) bytes at virtual offset off. A read that runs
	// past Size returns the bytes before it and io.EOF.
	ReadAt(p []byte, off int64) (int, error)
	// WriteAt writes p at virtual offset off. It fails with ErrReadOnly on a
	// read-only disk and ErrRange when the write runs past Size.
	WriteAt(p []byte, off int64) (int, error)
	// Size returns the virtual size in bytes.
	Size() uint64
	// Flush makes every completed write durable (fsync).
	Flush() error
	// Discard tells the image that the range's contents are no longer
	// needed. Afterwards the range reads as zeros or as its old contents;
	// a format that cannot discard treats it as a no-op.
	Discard(off, n int64) error
	// Close releases the image and its backing chain. A second call
	// returns ErrClosed.
	Close() error
	// ReadOnly reports whether writes are refused.
	ReadOnly() bool
	// Identity describes the top file so a snapshot can check, on restore,
	// that it is given the same disk.
	Identity() Identity
}

// Identity names a disk image file: the device and inode of the top file,
// its format and virtual size, and a digest of the header fields that do
// not change while the image is used (format, version, cluster size,
// virtual size, backing file name and format). Guest writes and metadata
// growth leave HeaderDigest unchanged; replacing the image with another
// one changes it.
type Identity struct {
	// Dev is st_dev of the top file.
	Dev uint64 `json:"dev"`
	// Inode is st_ino of the top file.
	Inode uint64 `json:"inode"`
	// Format is "raw" or "qcow2".
	Format string `json:"format"`
	// Size is the virtual size in bytes.
	Size uint64 `json:"size"`
	// HeaderDigest is the lower-case hex SHA-256 of the identifying header
	// fields described above.
	HeaderDigest string `json:"header_digest"`
}

// OpenOptions selects how Open treats a file.
type OpenOptions struct {
	// Format is "raw", "qcow2", or "" to detect it from the magic number.
	Format string
	// ReadOnly opens the top file read-only. Backing files are always
	// read-only.
	ReadOnly bool
}

// Format names accepted by OpenOptions.Format.
const (
	FormatRaw   = "raw"
	FormatQcow2 = "qcow2"
)

// MaxBackingChain is the most backing files a chain may hold below the top
// image. It is Cloud Hypervisor's MAX_NESTING_DEPTH (block/src/formats/
// qcow/util.rs, added in v40 so that a looping chain cannot recurse
// forever); loops are also caught directly, by device and inode.
const MaxBackingChain = 10

// Errors that callers may branch on; each is wrapped with the path and the
// detail.
var (
	// ErrFormat reports an image that is not valid for its format.
	ErrFormat = errors.New("disk: invalid image")
	// ErrUnsupported reports a valid image that uses a feature this
	// package does not implement.
	ErrUnsupported = errors.New("disk: unsupported image feature")
	// ErrBackingChain reports a backing chain that loops or is deeper than
	// MaxBackingChain.
	ErrBackingChain = errors.New("disk: bad backing chain")
	// ErrReadOnly reports a write to a read-only disk.
	ErrReadOnly = errors.New("disk: read-only")
	// ErrRange reports an access outside the virtual size.
	ErrRange = errors.New("disk: out of range")
	// ErrClosed reports use of a closed disk.
	ErrClosed = errors.New("disk: closed")
)

// qcow2Magic is "QFI\xfb", the first four bytes of every qcow image.
var qcow2Magic = []byte{'Q', 'F', 'I', 0xfb}

// Open opens the image at path. With opt.Format "" the format is detected:
// a file that starts with the qcow2 magic is qcow2, anything else raw.
func Open(path string, opt OpenOptions) (Disk, error) {
	return openChain(path, opt.Format, opt.ReadOnly, nil)
}

// openChain opens path as a member of a backing chain; chain holds the
// files above it (nil for the top image).
func openChain(path, format string, readOnly bool, chain []chainLink) (Disk, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("open disk %s: %w", path, err)
	}
	dev, ino, err := devInode(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open disk %s: %w", path, err)
	}
	link := chainLink{path: path, dev: dev, ino: ino}
	for _, l := range chain {
		if l.dev == dev && l.ino == ino {
			f.Close()
			return nil, fmt.Errorf("%w: backing chain %s loops", ErrBackingChain, chainString(append(chain, link)))
		}
	}
	if len(chain) > MaxBackingChain {
		f.Close()
		return nil, fmt.Errorf("%w: backing chain %s is deeper than %d backing files", ErrBackingChain, chainString(append(chain, link)), MaxBackingChain)
	}
	if format == "" {
		format, err = detect(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("open disk %s: %w", path, err)
		}
	}
	var d Disk
	switch format {
	case FormatRaw:
		d, err = newRaw(f, path, readOnly, dev, ino)
	case FormatQcow2:
		d, err = newQcow2(f, path, readOnly, append(chain, link))
	default:
		err = fmt.Errorf("%w: format %q is not raw or qcow2", ErrUnsupported, format)
	}
	if err != nil {
		f.Close()
		if len(chain) > 0 && errors.Is(err, ErrBackingChain) {
			return nil, err // already names the whole chain; the top adds its path once
		}
		return nil, fmt.Errorf("open disk %s: %w", path, err)
	}
	return d, nil
}

// detect reads the magic number of f.
func detect(f io.ReaderAt) (string, error) {
	var m [4]byte
	n, err := f.ReadAt(m[:], 0)
	if n < len(m) {
		if err == io.EOF || err == nil {
			return FormatRaw, nil
		}
		return "", fmt.Errorf("read magic: %w", err)
	}
	if string(m[:]) == string(qcow2Magic) {
		return FormatQcow2, nil
	}
	return FormatRaw, nil
}

// chainLink is one file of a backing chain.
type chainLink struct {
	path     string
	dev, ino uint64
}

// chainString renders a chain as "a.qcow2 → b.qcow2 → c.raw".
func chainString(chain []chainLink) string {
	names := make([]string, len(chain))
	for i, l := range chain {
		names[i] = l.path
	}
	return strings.Join(names, " → ")
}

// checkRange validates an access of n bytes at off against size and
// returns how many bytes fit.
func checkRange(off int64, n int, size uint64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: negative offset %d", ErrRange, off)
	}
	if uint64(off) >= size {
		if n == 0 && uint64(off) == size {
			return 0, nil
		}
		return 0, io.EOF
	}
	if uint64(n) > size-uint64(off) {
		return int(size - uint64(off)), io.EOF
	}
	return n, nil
}
