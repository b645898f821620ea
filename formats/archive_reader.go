package formats

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/cespare/xxhash/v2"
)

// Read sizes of the streaming Reader.
const (
	readBufferSize = 64 << 10 // bufio buffer in front of the io.Reader
	// firstPayloadBuf is the most a Reader allocates for a payload before
	// any of its bytes have arrived; it then grows the buffer by
	// payloadGrowth as they do, so allocation follows the data actually
	// read (at most firstPayloadBuf plus payloadGrowth times it), never a
	// bare length field. The factor trades copying against over-allocation
	// for a lying length.
	firstPayloadBuf = 1 << 20
	payloadGrowth   = 8
)

// Reader reads an archive sequentially from an io.Reader, verifying each
// section's checksum before returning it, and at the end verifying that the
// section table lists exactly the sections read and that the trailer
// follows it with nothing after. Nothing it returns is unverified.
//
// A Reader is not safe for concurrent use. It borrows the io.Reader, may
// read ahead of the current section, and never closes it. After an error,
// every later call returns the same error.
type Reader struct {
	r            *bufio.Reader
	off          int64 // bytes consumed from r
	major, minor uint16
	seen         []SectionInfo // every section read so far, unknown kinds too
	err          error         // sticky; io.EOF once the trailer is verified
	digest       *xxhash.Digest
}

// NewReader reads and checks the file header (magic, checksum, version) and
// returns a Reader positioned at the first section.
func NewReader(r io.Reader) (*Reader, error) {
	rd := &Reader{r: bufio.NewReaderSize(r, readBufferSize), digest: xxhash.New()}
	var h [headerSize]byte
	n, err := io.ReadFull(rd.r, h[:])
	rd.off += int64(n)
	if err != nil {
		// A short input that is not even a prefix of the magic is
		// reported as "not an archive", which helps more than "truncated".
		if m := min(n, len(fileMagic)); string(h[:m]) != string(fileMagic[:m]) {
			return nil, errorf(ErrMagic, "file header at offset 0x0: magic is %q, want %q", h[:m], fileMagic[:])
		}
		return nil, rd.readErr(err, "file header at offset 0x0", n, headerSize)
	}
	if rd.major, rd.minor, err = parseHeader(&h); err != nil {
		return nil, err
	}
	return rd, nil
}

// Version returns the archive's format version from its header.
func (r *Reader) Version() (major, minor uint16) { return r.major, r.minor }

// Next returns the next section of a kind this version knows, with its
// checksum verified; sections of unknown kinds are verified and skipped.
// After the last section it verifies the table and the trailer and returns
// io.EOF. Any damage is an error wrapping ErrChecksum, ErrTruncated or
// ErrCorrupt. The returned Payload belongs to the caller.
func (r *Reader) Next() (Section, error) {
	for {
		s, err := r.next(true)
		if err != nil {
			return Section{}, err
		}
		if s.Kind.Known() {
			return s, nil
		}
	}
}

// next reads the next section of any kind. With keep false the payload is
// only hashed, not returned (Verify uses that to stream in constant memory).
func (r *Reader) next(keep bool) (Section, error) {
	if r.err != nil {
		return Section{}, r.err
	}
	s, err := r.readSection(keep)
	if err != nil {
		r.err = err
	}
	return s, err
}

func (r *Reader) readSection(keep bool) (Section, error) {
	index, off := len(r.seen), r.off
	var hb [sectionHeaderSize]byte
	n, err := io.ReadFull(r.r, hb[:])
	r.off += int64(n)
	if n == 0 && errors.Is(err, io.EOF) {
		return Section{}, errorf(ErrTruncated, "archive ends at offset %#x after %d sections, before the section table", off, index)
	}
	if err != nil {
		return Section{}, r.readErr(err, fmt.Sprintf("section %d header at offset %#x", index, off), n, sectionHeaderSize)
	}
	h := parseSectionHeader(&hb)
	where := fmt.Sprintf("%s at offset %#x", describe(index, h.kind, h.id), off)
	if h.kind == KindTable {
		where = fmt.Sprintf("section table at offset %#x", off)
	}
	if err := h.checkLength(where); err != nil {
		return Section{}, err
	}
	r.digest.Reset()
	_, _ = r.digest.Write(hb[:]) // a Digest's Write never fails
	var payload []byte
	if keep || h.kind == KindTable {
		payload, err = r.readPayload(h.length, where)
	} else {
		err = r.hashPayload(h.length, where)
	}
	if err != nil {
		return Section{}, err
	}
	var sb [checksumSize]byte
	n, err = io.ReadFull(r.r, sb[:])
	r.off += int64(n)
	if err != nil {
		return Section{}, r.readErr(err, where+": checksum", n, checksumSize)
	}
	if stored, computed := le.Uint64(sb[:]), r.digest.Sum64(); stored != computed {
		return Section{}, errorf(ErrChecksum, "%s: checksum mismatch: stored %#016x, computed %#016x", where, stored, computed)
	}
	if err := h.checkFields(where); err != nil {
		return Section{}, err
	}
	info := SectionInfo{Kind: h.kind, ID: h.id, Offset: off, Length: h.length, Checksum: le.Uint64(sb[:])}
	if h.kind == KindTable {
		if err := r.finish(payload, info); err != nil {
			return Section{}, err
		}
		return Section{}, io.EOF
	}
	if index >= MaxTableEntries {
		return Section{}, errorf(ErrCorrupt, "%s: archive holds more than the limit of %d sections", where, MaxTableEntries)
	}
	r.seen = append(r.seen, info)
	return Section{Kind: h.kind, ID: h.id, Payload: payload}, nil
}

// readPayload reads n (already bounded) payload bytes into a new slice and
// hashes them. The slice starts at firstPayloadBuf and grows as bytes
// arrive, so a length field alone never makes the Reader allocate more than
// firstPayloadBuf.
func (r *Reader) readPayload(n uint64, where string) ([]byte, error) {
	buf := make([]byte, min(n, firstPayloadBuf))
	got := 0
	for {
		m, err := io.ReadFull(r.r, buf[got:])
		r.off += int64(m)
		if err != nil {
			return nil, r.readErr(err, where+": payload", got+m, int(n))
		}
		got = len(buf)
		if uint64(got) == n {
			break
		}
		grown := make([]byte, min(n, payloadGrowth*uint64(got)))
		copy(grown, buf)
		buf = grown
	}
	_, _ = r.digest.Write(buf)
	return buf, nil
}

// hashPayload hashes n payload bytes straight out of the read buffer.
func (r *Reader) hashPayload(n uint64, where string) error {
	done := uint64(0)
	for done < n {
		b, err := r.r.Peek(int(min(n-done, readBufferSize)))
		_, _ = r.digest.Write(b)
		_, _ = r.r.Discard(len(b))
		r.off += int64(len(b))
		done += uint64(len(b))
		if err != nil {
			return r.readErr(err, where+": payload", int(done), int(n))
		}
	}
	return nil
}

// finish checks, after the table section verified, that the table lists
// exactly the sections read, then reads and checks the trailer and that the
// input ends there.
func (r *Reader) finish(p []byte, table SectionInfo) error {
	where := fmt.Sprintf("section table at offset %#x", table.Offset)
	if got := len(p) / tableEntrySize; got != len(r.seen) {
		return errorf(ErrCorrupt, "%s: lists %d sections, archive has %d", where, got, len(r.seen))
	}
	entries, err := parseTable(p, table.Offset)
	if err != nil {
		return err
	}
	for i, e := range entries {
		if s := r.seen[i]; e != s {
			return errorf(ErrCorrupt, "%s: entry %d is %s %d at %#x (%d bytes, checksum %#016x), archive has %s %d at %#x (%d bytes, checksum %#016x)",
				where, i, e.Kind, e.ID, uint64(e.Offset), e.Length, e.Checksum, s.Kind, s.ID, uint64(s.Offset), s.Length, s.Checksum)
		}
	}
	var t [trailerSize]byte
	off := r.off
	n, err := io.ReadFull(r.r, t[:])
	r.off += int64(n)
	if err != nil {
		return r.readErr(err, fmt.Sprintf("trailer at offset %#x", off), n, trailerSize)
	}
	tableOffset, count, err := parseTrailer(&t, off, ErrCorrupt)
	if err != nil {
		return err
	}
	if tableOffset != table.Offset || count != uint64(len(r.seen)) {
		return errorf(ErrCorrupt, "trailer at offset %#x: records table at %#x with %d sections, archive has table at %#x with %d",
			off, uint64(tableOffset), count, uint64(table.Offset), len(r.seen))
	}
	switch _, err := r.r.ReadByte(); {
	case err == nil:
		return errorf(ErrCorrupt, "trailing data after the trailer at offset %#x", r.off)
	case !errors.Is(err, io.EOF):
		return fmt.Errorf("formats: read past the trailer at offset %#x: %w", r.off, err)
	}
	return nil
}

// readErr turns a failed read of want bytes, of which got arrived, into an
// error: running out of input is ErrTruncated, anything else is the
// underlying error with context. where already names the offset.
func (r *Reader) readErr(err error, where string, got, want int) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errorf(ErrTruncated, "%s: archive ends at offset %#x after %d of %d bytes", where, r.off, got, want)
	}
	return fmt.Errorf("formats: read %s: %w", where, err)
}
