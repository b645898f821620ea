package acpi

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrAML is returned when a term cannot be encoded (bad name, value out of range).
var ErrAML = errors.New("acpi: cannot encode AML")

// AML opcodes and prefixes (ACPI 6.5 §20.3).
const (
	opZero        = 0x00
	opOne         = 0x01
	opName        = 0x08
	opBytePrefix  = 0x0A
	opWordPrefix  = 0x0B
	opDWordPrefix = 0x0C
	opStringPre   = 0x0D
	opQWordPrefix = 0x0E
	opScope       = 0x10
	opBuffer      = 0x11
	opPackage     = 0x12
	opMethod      = 0x14
	opDualName    = 0x2E
	opMultiName   = 0x2F
	opExtPrefix   = 0x5B
	opDevice      = 0x82 // after opExtPrefix
	opRootChar    = 0x5C
	opParentChar  = 0x5E
	opReturn      = 0xA4

	maxPkgLength = 1<<28 - 1
)

// Term is one piece of AML: a named object, a statement or a data object.
type Term interface {
	// AppendAML appends the term's encoding to b.
	AppendAML(b []byte) ([]byte, error)
}

// Encode returns the concatenated encoding of terms (a TermList).
func Encode(terms ...Term) ([]byte, error) {
	return appendTerms(nil, terms)
}

func appendTerms(b []byte, terms []Term) ([]byte, error) {
	var err error
	for _, t := range terms {
		if t == nil {
			return nil, fmt.Errorf("%w: nil term", ErrAML)
		}
		if b, err = t.AppendAML(b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// appendPkg appends PkgLength followed by body. PkgLength counts its own
// bytes: one byte (bits 0–5) when the total is below 64, otherwise a lead
// byte holding the count of following bytes in bits 6–7 and the low nibble
// of the length, then the rest of the length 8 bits at a time (§20.2.4).
func appendPkg(b, body []byte) ([]byte, error) {
	n := len(body)
	var lenBytes int
	switch {
	case n+1 < 1<<6:
		return append(append(b, byte(n+1)), body...), nil
	case n+2 < 1<<12:
		lenBytes = 2
	case n+3 < 1<<20:
		lenBytes = 3
	case n+4 <= maxPkgLength:
		lenBytes = 4
	default:
		return nil, fmt.Errorf("%w: package of %d bytes exceeds the PkgLength limit %d", ErrAML, n, maxPkgLength)
	}
	total := n + lenBytes
	b = append(b, byte((lenBytes-1)<<6|total&0xF))
	for i := 1; i < lenBytes; i++ {
		b = append(b, byte(total>>(4+8*(i-1))))
	}
	return append(b, body...), nil
}

// appendNameString encodes a path such as "\_SB_.COM1", "^PCI0.S00" or
// "_HID". Segments shorter than four characters are padded with '_'.
func appendNameString(b []byte, path string) ([]byte, error) {
	i := 0
	if i < len(path) && path[i] == '\\' {
		b = append(b, opRootChar)
		i++
	} else {
		for i < len(path) && path[i] == '^' {
			b = append(b, opParentChar)
			i++
		}
	}
	rest := path[i:]
	if rest == "" {
		return append(b, 0x00), nil // NullName
	}
	var segs [][4]byte
	for start := 0; start <= len(rest); {
		end := start
		for end < len(rest) && rest[end] != '.' {
			end++
		}
		seg, err := nameSeg(rest[start:end])
		if err != nil {
			return nil, fmt.Errorf("%w: name %q: %w", ErrAML, path, err)
		}
		segs = append(segs, seg)
		start = end + 1
	}
	switch {
	case len(segs) == 1:
	case len(segs) == 2:
		b = append(b, opDualName)
	case len(segs) <= 255:
		b = append(b, opMultiName, byte(len(segs)))
	default:
		return nil, fmt.Errorf("%w: name %q has %d segments, more than 255", ErrAML, path, len(segs))
	}
	for _, s := range segs {
		b = append(b, s[:]...)
	}
	return b, nil
}

func nameSeg(s string) ([4]byte, error) {
	seg := [4]byte{'_', '_', '_', '_'}
	if len(s) == 0 || len(s) > 4 {
		return seg, fmt.Errorf("segment %q is not 1 to 4 characters", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c == '_' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9'
		if !ok {
			return seg, fmt.Errorf("segment %q: %q is not allowed at position %d", s, c, i)
		}
		seg[i] = c
	}
	return seg, nil
}

// Name is Name(Path, Value): a named data object.
type Name struct {
	Path  string
	Value Term
}

// AppendAML implements Term.
func (n Name) AppendAML(b []byte) ([]byte, error) {
	b = append(b, opName)
	b, err := appendNameString(b, n.Path)
	if err != nil {
		return nil, err
	}
	if n.Value == nil {
		return nil, fmt.Errorf("%w: Name %q has no value", ErrAML, n.Path)
	}
	return n.Value.AppendAML(b)
}

// Scope is Scope(Path) { Body }.
type Scope struct {
	Path string
	Body []Term
}

// AppendAML implements Term.
func (s Scope) AppendAML(b []byte) ([]byte, error) {
	return appendNamedPkg(append(b, opScope), s.Path, nil, s.Body)
}

// Device is Device(Path) { Body }.
type Device struct {
	Path string
	Body []Term
}

// AppendAML implements Term.
func (d Device) AppendAML(b []byte) ([]byte, error) {
	return appendNamedPkg(append(b, opExtPrefix, opDevice), d.Path, nil, d.Body)
}

// Method is Method(Path, Args, Serialized) { Body }, with SyncLevel 0.
type Method struct {
	Path       string
	Args       uint8 // 0–7
	Serialized bool
	Body       []Term
}

// AppendAML implements Term.
func (m Method) AppendAML(b []byte) ([]byte, error) {
	if m.Args > 7 {
		return nil, fmt.Errorf("%w: method %q has %d arguments, at most 7", ErrAML, m.Path, m.Args)
	}
	flags := m.Args
	if m.Serialized {
		flags |= 1 << 3
	}
	return appendNamedPkg(append(b, opMethod), m.Path, []byte{flags}, m.Body)
}

// appendNamedPkg appends PkgLength NameString extra TermList.
func appendNamedPkg(b []byte, path string, extra []byte, body []Term) ([]byte, error) {
	inner, err := appendNameString(nil, path)
	if err != nil {
		return nil, err
	}
	inner = append(inner, extra...)
	if inner, err = appendTerms(inner, body); err != nil {
		return nil, err
	}
	return appendPkg(b, inner)
}

// Return is Return(Value).
type Return struct {
	Value Term
}

// AppendAML implements Term.
func (r Return) AppendAML(b []byte) ([]byte, error) {
	if r.Value == nil {
		return nil, fmt.Errorf("%w: Return without a value", ErrAML)
	}
	return r.Value.AppendAML(append(b, opReturn))
}

// Package is Package() { elements… } (at most 255 elements).
type Package []Term

// AppendAML implements Term.
func (p Package) AppendAML(b []byte) ([]byte, error) {
	if len(p) > 255 {
		return nil, fmt.Errorf("%w: package of %d elements, at most 255", ErrAML, len(p))
	}
	inner, err := appendTerms([]byte{byte(len(p))}, p)
	if err != nil {
		return nil, err
	}
	return appendPkg(append(b, opPackage), inner)
}

// String is an AML string constant: ASCII 0x01–0x7F, NUL-terminated.
type String string

// AppendAML implements Term.
func (s String) AppendAML(b []byte) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 || s[i] > 0x7F {
			return nil, fmt.Errorf("%w: string %q has byte %#x at %d, not ASCII 0x01–0x7F", ErrAML, string(s), s[i], i)
		}
	}
	b = append(b, opStringPre)
	b = append(b, s...)
	return append(b, 0), nil
}

// Integer is an integer constant in its smallest encoding, as iasl emits:
// Zero, One, then Byte, Word, DWord or QWord.
type Integer uint64

// AppendAML implements Term.
func (v Integer) AppendAML(b []byte) ([]byte, error) {
	switch {
	case v == 0:
		return append(b, opZero), nil
	case v == 1:
		return append(b, opOne), nil
	case v <= 0xFF:
		return append(b, opBytePrefix, byte(v)), nil
	case v <= 0xFFFF:
		return binary.LittleEndian.AppendUint16(append(b, opWordPrefix), uint16(v)), nil
	case v <= 0xFFFF_FFFF:
		return binary.LittleEndian.AppendUint32(append(b, opDWordPrefix), uint32(v)), nil
	}
	return binary.LittleEndian.AppendUint64(append(b, opQWordPrefix), uint64(v)), nil
}

// DWord is an integer constant always encoded as a DWordConst (as
// Firecracker encodes a device's _UID).
type DWord uint32

// AppendAML implements Term.
func (v DWord) AppendAML(b []byte) ([]byte, error) {
	return binary.LittleEndian.AppendUint32(append(b, opDWordPrefix), uint32(v)), nil
}

// EISAID is a compressed EISA ID such as "PNP0501": three upper-case letters
// and four hex digits, encoded as a DWordConst (bytes 41 D0 05 01 for PNP0501).
type EISAID string

// AppendAML implements Term.
func (id EISAID) AppendAML(b []byte) ([]byte, error) {
	s := string(id)
	bad := func() ([]byte, error) {
		return nil, fmt.Errorf("%w: EISA ID %q is not three letters A–Z and four hex digits", ErrAML, s)
	}
	if len(s) != 7 {
		return bad()
	}
	var vendor uint16
	for i := 0; i < 3; i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return bad()
		}
		vendor = vendor<<5 | uint16(s[i]-'@')
	}
	var product uint16
	for i := 3; i < 7; i++ {
		c := s[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return bad()
		}
		product = product<<4 | uint16(d)
	}
	return append(b, opDWordPrefix, byte(vendor>>8), byte(vendor), byte(product>>8), byte(product)), nil
}
