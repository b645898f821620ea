package formats

import (
	"errors"
	"fmt"
	"io"
	"sort"
)

// Summary describes an archive as Verify read it. It is meant to be printed
// as JSON (chsnap inspect --json) and its field names are stable within a
// format major version.
type Summary struct {
	// Major and Minor are the format version from the file header.
	Major uint16 `json:"format_major"`
	Minor uint16 `json:"format_minor"`
	// Version is "Major.Minor".
	Version string `json:"format_version"`
	// Size is the archive's total size in bytes (as far as it was read,
	// when Verify fails).
	Size int64 `json:"size"`
	// Sections counts the sections, of every kind, not counting the table.
	Sections int `json:"sections"`
	// PayloadBytes is the sum of those sections' payload lengths.
	PayloadBytes uint64 `json:"payload_bytes"`
	// Kinds has one entry per kind present, in ascending kind order.
	Kinds []KindSummary `json:"kinds"`
}

// Summary describes the sections read so far (all of them once Next
// returned io.EOF), and the bytes consumed.
func (r *Reader) Summary() Summary {
	s := Summary{Major: r.major, Minor: r.minor, Version: fmt.Sprintf("%d.%d", r.major, r.minor), Size: r.off}
	kinds := map[SectionKind]*KindSummary{}
	for _, info := range r.seen {
		k := kinds[info.Kind]
		if k == nil {
			k = &KindSummary{Kind: info.Kind, Name: info.Kind.String(), Known: info.Kind.Known()}
			kinds[info.Kind] = k
		}
		k.Count++
		k.Bytes += info.Length
		s.Sections++
		s.PayloadBytes += info.Length
	}
	s.Kinds = make([]KindSummary, 0, len(kinds))
	for _, k := range kinds {
		s.Kinds = append(s.Kinds, *k)
	}
	sort.Slice(s.Kinds, func(i, j int) bool { return s.Kinds[i].Kind < s.Kinds[j].Kind })
	return s
}

// KindSummary counts the sections of one kind.
type KindSummary struct {
	// Kind is the numeric kind and Name its String().
	Kind SectionKind `json:"kind"`
	Name string      `json:"name"`
	// Known is false for a kind from a newer minor version; readers skip
	// such sections.
	Known bool `json:"known"`
	// Count is the number of sections and Bytes the sum of their payload
	// lengths.
	Count int    `json:"count"`
	Bytes uint64 `json:"bytes"`
}

// Verify reads a whole archive from r and checks everything a streaming
// Reader checks: header, every section's checksum, the table against the
// sections and the trailer. It holds no payload but the table's, so it runs
// in constant memory whatever the archive's size. It needs no KVM. On error
// the Summary covers what was read before the damage.
func Verify(r io.Reader) (Summary, error) {
	rd, err := NewReader(r)
	if err != nil {
		return Summary{}, err
	}
	for {
		if _, err = rd.next(false); err != nil {
			break
		}
	}
	s := rd.Summary()
	if errors.Is(err, io.EOF) {
		return s, nil
	}
	return s, err
}
