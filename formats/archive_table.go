package formats

import (
	"errors"
	"fmt"
	"io"

	"github.com/cespare/xxhash/v2"
)

// putSectionHeader encodes a section header; the reserved field stays zero.
func putSectionHeader(b *[sectionHeaderSize]byte, kind SectionKind, id uint32, length uint64) {
	*b = [sectionHeaderSize]byte{}
	le.PutUint32(b[0:4], uint32(kind))
	le.PutUint32(b[4:8], id)
	le.PutUint64(b[8:16], length)
}

// sectionHeader is a decoded section header.
type sectionHeader struct {
	kind     SectionKind
	id       uint32
	length   uint64
	reserved uint64
}

func parseSectionHeader(b *[sectionHeaderSize]byte) sectionHeader {
	return sectionHeader{
		kind:     SectionKind(le.Uint32(b[0:4])),
		id:       le.Uint32(b[4:8]),
		length:   le.Uint64(b[8:16]),
		reserved: le.Uint64(b[16:24]),
	}
}

// checkLength bounds a section's length before anything is read or
// allocated for it. The table may be longer than MaxTableEntries entries
// allow only if it is corrupt.
func (h sectionHeader) checkLength(where string) error {
	limit := uint64(MaxSectionSize)
	if h.kind == KindTable {
		limit = MaxTableEntries * tableEntrySize
	}
	if h.length > limit {
		return errorf(ErrCorrupt, "%s: length %d exceeds the limit of %d", where, h.length, limit)
	}
	return nil
}

// checkFields checks what the checksum cannot: fields that must be zero or
// fixed. Call it only after the checksum matched, so that a damaged header
// is reported as a checksum mismatch.
func (h sectionHeader) checkFields(where string) error {
	if h.reserved != 0 {
		return errorf(ErrCorrupt, "%s: reserved field is %#x, want 0", where, h.reserved)
	}
	if h.kind == KindTable && h.id != 0 {
		return errorf(ErrCorrupt, "%s: table id is %d, want 0", where, h.id)
	}
	if h.kind == KindTable && h.length%tableEntrySize != 0 {
		return errorf(ErrCorrupt, "%s: table length %d is not a multiple of %d", where, h.length, tableEntrySize)
	}
	return nil
}

// appendTable appends the table payload for entries to b.
func appendTable(b []byte, entries []SectionInfo) []byte {
	for _, e := range entries {
		b = le.AppendUint32(b, uint32(e.Kind))
		b = le.AppendUint32(b, e.ID)
		b = le.AppendUint64(b, uint64(e.Offset))
		b = le.AppendUint64(b, e.Length)
		b = le.AppendUint64(b, e.Checksum)
	}
	return b
}

// parseTable decodes a table payload whose length is a checked multiple of
// tableEntrySize. It checks that the entries describe sections laid back to
// back from the end of the file header to tableOffset, each within limits;
// the entries' kinds and ids are not judged (unknown kinds are allowed).
func parseTable(p []byte, tableOffset int64) ([]SectionInfo, error) {
	n := len(p) / tableEntrySize
	entries := make([]SectionInfo, n)
	next := int64(headerSize)
	for i := range entries {
		b := p[i*tableEntrySize : (i+1)*tableEntrySize]
		e := SectionInfo{
			Kind:     SectionKind(le.Uint32(b[0:4])),
			ID:       le.Uint32(b[4:8]),
			Offset:   int64(le.Uint64(b[8:16])),
			Length:   le.Uint64(b[16:24]),
			Checksum: le.Uint64(b[24:32]),
		}
		where := fmt.Sprintf("table entry %d (%s %d)", i, e.Kind, e.ID)
		switch {
		case e.Kind == KindTable:
			return nil, errorf(ErrCorrupt, "%s: the table cannot list itself", where)
		case e.Offset != next:
			return nil, errorf(ErrCorrupt, "%s: offset %#x, want %#x (sections are back to back)", where, uint64(e.Offset), next)
		case e.Length > MaxSectionSize:
			return nil, errorf(ErrCorrupt, "%s: length %d exceeds the limit of %d", where, e.Length, MaxSectionSize)
		}
		next = e.end()
		if next > tableOffset {
			return nil, errorf(ErrCorrupt, "%s: section ends at %#x, past the table at %#x", where, next, tableOffset)
		}
		entries[i] = e
	}
	if next != tableOffset {
		return nil, errorf(ErrCorrupt, "section table at offset %#x: its %d sections end at %#x", tableOffset, n, next)
	}
	return entries, nil
}

// putTrailer encodes the trailer.
func putTrailer(b *[trailerSize]byte, tableOffset int64, count uint64) {
	copy(b[0:8], trailerMagic[:])
	le.PutUint64(b[8:16], uint64(tableOffset))
	le.PutUint64(b[16:24], count)
	le.PutUint64(b[24:32], xxhash.Sum64(b[:24]))
}

// parseTrailer checks the trailer found at offset off and returns the table
// offset and section count it records. missing is the sentinel for a
// trailer without its magic: a streaming reader that has just verified the
// table calls that corrupt, a random-access reader looking at a file's last
// bytes calls it truncated (the usual cause is an unfinished save).
func parseTrailer(b *[trailerSize]byte, off int64, missing error) (tableOffset int64, count uint64, err error) {
	if [8]byte(b[0:8]) != trailerMagic {
		return 0, 0, errorf(missing, "trailer at offset %#x: magic is %q, want %q", off, b[0:8], trailerMagic[:])
	}
	if got, want := le.Uint64(b[24:32]), xxhash.Sum64(b[:24]); got != want {
		return 0, 0, errorf(ErrChecksum, "trailer at offset %#x: checksum mismatch: stored %#016x, computed %#016x", off, got, want)
	}
	return int64(le.Uint64(b[8:16])), le.Uint64(b[16:24]), nil
}

// ReadTable reads the archive's trailer, file header and section table from
// r, an archive of size bytes, without reading the sections themselves. It
// verifies the header, the trailer and the table (checksums, limits, and that
// the entries tile the file from the header to the table). Entries of kinds
// this version does not know are returned too; callers skip them. Read a
// listed section with ReadSectionAt, which verifies its checksum.
func ReadTable(r io.ReaderAt, size int64) (major, minor uint16, table []SectionInfo, err error) {
	var h [headerSize]byte
	if size < headerSize {
		// As NewReader does: a short file that is not even a prefix of
		// the magic is "not an archive" rather than "truncated".
		m := int(max(0, min(size, int64(len(fileMagic)))))
		if err := readAt(r, h[:m], 0, size, "file header"); err != nil {
			return 0, 0, nil, err
		}
		if string(h[:m]) != string(fileMagic[:m]) {
			return 0, 0, nil, errorf(ErrMagic, "file header at offset 0x0: magic is %q, want %q", h[:m], fileMagic[:])
		}
	}
	if err := readAt(r, h[:], 0, size, "file header"); err != nil {
		return 0, 0, nil, err
	}
	if major, minor, err = parseHeader(&h); err != nil {
		return major, minor, nil, err
	}
	const minSize = headerSize + sectionOverhead + trailerSize // no sections, empty table
	if size < minSize {
		return major, minor, nil, errorf(ErrTruncated, "archive of %d bytes is shorter than the minimum of %d", size, minSize)
	}
	var t [trailerSize]byte
	toff := size - trailerSize
	if err := readAt(r, t[:], toff, size, "trailer"); err != nil {
		return major, minor, nil, err
	}
	tableOffset, count, err := parseTrailer(&t, toff, ErrTruncated)
	if err != nil {
		return major, minor, nil, err
	}
	// The table section must end exactly where the trailer starts. Check
	// count first so the multiplication cannot overflow.
	if count > MaxTableEntries {
		return major, minor, nil, errorf(ErrCorrupt, "trailer at offset %#x: section count %d exceeds the limit of %d", toff, count, MaxTableEntries)
	}
	if want := toff - sectionOverhead - int64(count)*tableEntrySize; tableOffset != want || tableOffset < headerSize {
		return major, minor, nil, errorf(ErrCorrupt, "trailer at offset %#x: table offset %#x, want %#x for %d sections", toff, uint64(tableOffset), want, count)
	}
	info := SectionInfo{Kind: KindTable, Offset: tableOffset, Length: count * tableEntrySize}
	p, _, err := readSectionAt(r, info, size, "section table")
	if err != nil {
		return major, minor, nil, err
	}
	table, err = parseTable(p, tableOffset)
	return major, minor, table, err
}

// ReadSectionAt reads the section that table entry info (from ReadTable on
// the same archive) describes, checks that its header matches the entry and
// that its checksum matches both the stored and the listed one, and returns
// it. The returned Payload is newly allocated, at most MaxSectionSize bytes.
func ReadSectionAt(r io.ReaderAt, info SectionInfo) (Section, error) {
	where := fmt.Sprintf("section %s %d at offset %#x", info.Kind, info.ID, uint64(info.Offset))
	if info.Kind == KindTable || info.Length > MaxSectionSize || info.Offset < headerSize {
		return Section{}, fmt.Errorf("formats: read %s: not an entry of a verified table", where)
	}
	p, sum, err := readSectionAt(r, info, -1, where)
	if err != nil {
		return Section{}, err
	}
	if sum != info.Checksum {
		return Section{}, errorf(ErrChecksum, "%s: checksum %#016x, table lists %#016x", where, sum, info.Checksum)
	}
	return Section{Kind: info.Kind, ID: info.ID, Payload: p}, nil
}

// readSectionAt reads the section at info.Offset, checks that its header
// says info.Kind, info.ID and info.Length and that its checksum matches, and
// returns the payload and checksum. size is the archive size, or -1 if not
// known. info.Length must already be bounded.
func readSectionAt(r io.ReaderAt, info SectionInfo, size int64, where string) ([]byte, uint64, error) {
	buf := make([]byte, sectionOverhead+info.Length)
	if err := readAt(r, buf, info.Offset, size, where); err != nil {
		return nil, 0, err
	}
	hb := (*[sectionHeaderSize]byte)(buf[:sectionHeaderSize])
	h := parseSectionHeader(hb)
	n := sectionHeaderSize + info.Length
	stored, computed := le.Uint64(buf[n:]), xxhash.Sum64(buf[:n])
	if h.kind != info.Kind || h.id != info.ID || h.length != info.Length {
		if stored != computed {
			return nil, 0, errorf(ErrChecksum, "%s: checksum mismatch: stored %#016x, computed %#016x", where, stored, computed)
		}
		return nil, 0, errorf(ErrCorrupt, "%s: header says %s %d of %d bytes, want %s %d of %d bytes",
			where, h.kind, h.id, h.length, info.Kind, info.ID, info.Length)
	}
	if stored != computed {
		return nil, 0, errorf(ErrChecksum, "%s: checksum mismatch: stored %#016x, computed %#016x", where, stored, computed)
	}
	if err := h.checkFields(where); err != nil {
		return nil, 0, err
	}
	return buf[sectionHeaderSize:n:n], stored, nil
}

// readAt fills p from r at off; running off the end of the archive (size,
// or io.EOF when size is -1) is ErrTruncated.
func readAt(r io.ReaderAt, p []byte, off, size int64, where string) error {
	if size >= 0 && off+int64(len(p)) > size {
		return errorf(ErrTruncated, "%s at offset %#x: needs %d bytes, archive has %d", where, uint64(off), len(p), size)
	}
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return errorf(ErrTruncated, "%s at offset %#x: archive ends after %d of %d bytes", where, uint64(off), n, len(p))
	}
	return fmt.Errorf("formats: read %s at offset %#x: %w", where, uint64(off), err)
}
