package formats

import (
	"errors"
	"fmt"
	"io"

	"github.com/cespare/xxhash/v2"
)

// smallSection is the payload size up to which the Writer assembles header,
// payload and checksum in one buffer and issues a single Write; larger
// payloads are written in place to avoid a copy.
const smallSection = 64 << 10

// errWriterClosed is returned by a Writer used after Close.
var errWriterClosed = errors.New("formats: archive writer already closed")

// Writer writes an archive to an io.Writer: the file header, then each
// section as WriteSection is called, then the section table and trailer on
// Close. The same sequence of sections always gives the same bytes.
//
// A Writer is not safe for concurrent use. It borrows w and never closes it.
// After a write to w fails, every later call returns that error.
type Writer struct {
	w     io.Writer
	n     int64
	table []SectionInfo
	err   error // sticky: the first write error
	done  bool  // Close has run
	buf   []byte
}

// NewWriter writes the file header for format FormatMajor.FormatMinor to w
// and returns a Writer for the sections that follow.
func NewWriter(w io.Writer) (*Writer, error) {
	aw := &Writer{w: w}
	var h [headerSize]byte
	putHeader(&h, FormatMajor, FormatMinor)
	if err := aw.write(h[:]); err != nil {
		return nil, err
	}
	return aw, nil
}

// WriteSection writes one section with the given kind, id and payload. It
// refuses KindTable (Close writes the table), a payload over MaxSectionSize
// and a section beyond MaxTableEntries; those refusals write nothing and do
// not poison the Writer. The payload is not retained.
func (w *Writer) WriteSection(kind SectionKind, id uint32, payload []byte) error {
	if w.done {
		return errWriterClosed
	}
	if w.err != nil {
		return w.err
	}
	if kind == KindTable {
		return fmt.Errorf("formats: write section %s %d: kind %#x is reserved for the section table", kind, id, uint32(kind))
	}
	if len(payload) > MaxSectionSize {
		return fmt.Errorf("formats: write section %s %d: payload of %d bytes exceeds the limit of %d", kind, id, len(payload), MaxSectionSize)
	}
	if len(w.table) >= MaxTableEntries {
		return fmt.Errorf("formats: write section %s %d: archive already holds the limit of %d sections", kind, id, MaxTableEntries)
	}
	info, err := w.writeSection(kind, id, payload)
	if err != nil {
		return err
	}
	w.table = append(w.table, info)
	return nil
}

// writeSection writes header, payload and checksum and returns the table
// entry for them.
func (w *Writer) writeSection(kind SectionKind, id uint32, payload []byte) (SectionInfo, error) {
	info := SectionInfo{Kind: kind, ID: id, Offset: w.n, Length: uint64(len(payload))}
	var h [sectionHeaderSize]byte
	putSectionHeader(&h, kind, id, uint64(len(payload)))
	d := xxhash.New()
	_, _ = d.Write(h[:]) // a Digest's Write never fails
	_, _ = d.Write(payload)
	info.Checksum = d.Sum64()

	if len(payload) <= smallSection {
		w.buf = append(w.buf[:0], h[:]...)
		w.buf = append(w.buf, payload...)
		w.buf = le.AppendUint64(w.buf, info.Checksum)
		return info, w.write(w.buf)
	}
	if err := w.write(h[:]); err != nil {
		return info, err
	}
	if err := w.write(payload); err != nil {
		return info, err
	}
	var sum [checksumSize]byte
	le.PutUint64(sum[:], info.Checksum)
	return info, w.write(sum[:])
}

// Close writes the section table and the trailer. It does not close the
// underlying io.Writer. A second Close returns an error.
func (w *Writer) Close() error {
	if w.done {
		return errWriterClosed
	}
	if w.err != nil {
		return w.err
	}
	w.done = true
	table := appendTable(make([]byte, 0, len(w.table)*tableEntrySize), w.table)
	tinfo, err := w.writeSection(KindTable, 0, table)
	if err != nil {
		return err
	}
	var t [trailerSize]byte
	putTrailer(&t, tinfo.Offset, uint64(len(w.table)))
	return w.write(t[:])
}

// Written returns the number of bytes written to the underlying io.Writer
// so far; after a successful Close it is the archive's size.
func (w *Writer) Written() int64 { return w.n }

func (w *Writer) write(p []byte) error {
	n, err := w.w.Write(p)
	w.n += int64(n)
	if err == nil && n != len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = fmt.Errorf("formats: write archive at offset %#x: %w", w.n, err)
	}
	return w.err
}
