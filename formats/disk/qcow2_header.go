package disk

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// qcow2 header limits. The table-size limits are QEMU's (QCOW_MAX_L1_SIZE,
// QCOW_MAX_REFTABLE_SIZE in block/qcow2.h), so any image QEMU writes opens
// here and a hostile header cannot make us allocate more.
const (
	minClusterBits   = 9
	maxClusterBits   = 21
	maxL1Bytes       = 32 << 20
	maxRefTableBytes = 8 << 20
	maxBackingName   = 1023
	v2HeaderLen      = 72
	v3MinHeaderLen   = 104
	// l2OffsetMask selects bits 9..55 of an L1 entry or standard L2 entry.
	l2OffsetMask = 0x00ff_ffff_ffff_fe00
	// refTableOffsetMask selects bits 9..63 of a refcount table entry.
	refTableOffsetMask = 0xffff_ffff_ffff_fe00
	// copiedFlag (bit 63) marks an L1/L2 entry whose cluster has refcount 1.
	copiedFlag = uint64(1) << 63
	// compressedFlag (bit 62) marks a compressed-cluster L2 descriptor.
	compressedFlag = uint64(1) << 62
	// zeroFlag (bit 0, v3 only) marks a standard L2 entry that reads as zeros.
	zeroFlag = uint64(1)
)

// Incompatible feature bits (header offset 72, v3).
const (
	incompatDirty          = 1 << 0
	incompatCorrupt        = 1 << 1
	incompatExternalData   = 1 << 2
	incompatCompressionTyp = 1 << 3
	incompatExtendedL2     = 1 << 4
)

// Header extension types.
const (
	extEnd           = 0x00000000
	extBackingFormat = 0xe2792aca
	extFeatureTable  = 0x6803f857
)

// header is a parsed, validated qcow2 header.
type header struct {
	version          uint32
	backingOffset    uint64
	backingSize      uint32
	clusterBits      uint32
	size             uint64
	cryptMethod      uint32
	l1Size           uint32
	l1Offset         uint64
	refTableOffset   uint64
	refTableClusters uint32
	nbSnapshots      uint32
	snapshotsOffset  uint64
	incompatible     uint64
	compatible       uint64
	autoclear        uint64
	refcountOrder    uint32
	headerLen        uint32
	compressionType  uint8

	backingFile   string
	backingFormat string
	featureNames  map[[2]byte]string // {type, bit} → name, from the feature name table
}

func (h *header) clusterSize() uint64 { return 1 << h.clusterBits }

// parseHeader parses the start of a qcow2 file (buf holds at least its first
// cluster, or the whole file if shorter) and checks every field against
// fileSize.
func parseHeader(buf []byte, fileSize uint64) (*header, error) {
	be := binary.BigEndian
	if len(buf) < v2HeaderLen {
		return nil, fmt.Errorf("%w: qcow2 header truncated at %d bytes, need %d", ErrFormat, len(buf), v2HeaderLen)
	}
	if string(buf[:4]) != string(qcow2Magic) {
		return nil, fmt.Errorf("%w: no qcow2 magic", ErrFormat)
	}
	h := &header{
		version:          be.Uint32(buf[4:]),
		backingOffset:    be.Uint64(buf[8:]),
		backingSize:      be.Uint32(buf[16:]),
		clusterBits:      be.Uint32(buf[20:]),
		size:             be.Uint64(buf[24:]),
		cryptMethod:      be.Uint32(buf[32:]),
		l1Size:           be.Uint32(buf[36:]),
		l1Offset:         be.Uint64(buf[40:]),
		refTableOffset:   be.Uint64(buf[48:]),
		refTableClusters: be.Uint32(buf[56:]),
		nbSnapshots:      be.Uint32(buf[60:]),
		snapshotsOffset:  be.Uint64(buf[64:]),
		refcountOrder:    4,
		headerLen:        v2HeaderLen,
	}
	switch h.version {
	case 2:
	case 3:
		if len(buf) < v3MinHeaderLen {
			return nil, fmt.Errorf("%w: qcow2 v3 header truncated at %d bytes, need %d", ErrFormat, len(buf), v3MinHeaderLen)
		}
		h.incompatible = be.Uint64(buf[72:])
		h.compatible = be.Uint64(buf[80:])
		h.autoclear = be.Uint64(buf[88:])
		h.refcountOrder = be.Uint32(buf[96:])
		h.headerLen = be.Uint32(buf[100:])
		if h.headerLen < v3MinHeaderLen || h.headerLen%8 != 0 {
			return nil, fmt.Errorf("%w: qcow2 header length %d (want a multiple of 8, at least %d)", ErrFormat, h.headerLen, v3MinHeaderLen)
		}
		if h.headerLen > v3MinHeaderLen {
			if uint64(len(buf)) < uint64(h.headerLen) {
				return nil, fmt.Errorf("%w: qcow2 header length %d runs past the first cluster", ErrFormat, h.headerLen)
			}
			h.compressionType = buf[104]
		}
	default:
		return nil, fmt.Errorf("%w: qcow2 version %d (only 2 and 3)", ErrUnsupported, h.version)
	}
	if h.clusterBits < minClusterBits || h.clusterBits > maxClusterBits {
		return nil, fmt.Errorf("%w: qcow2 cluster_bits %d outside %d..%d", ErrFormat, h.clusterBits, minClusterBits, maxClusterBits)
	}
	cs := h.clusterSize()
	if uint64(h.headerLen) > cs {
		return nil, fmt.Errorf("%w: qcow2 header length %d exceeds cluster size %d", ErrFormat, h.headerLen, cs)
	}
	if h.refcountOrder > 6 {
		return nil, fmt.Errorf("%w: qcow2 refcount_order %d above 6", ErrFormat, h.refcountOrder)
	}
	if h.cryptMethod != 0 {
		return nil, fmt.Errorf("%w: qcow2 encryption (method %d)", ErrUnsupported, h.cryptMethod)
	}
	if err := h.parseExtensions(buf); err != nil {
		return nil, err
	}
	if err := h.checkIncompatible(); err != nil {
		return nil, err
	}
	// Size: every byte must be addressable through L1 → L2 → cluster.
	l2Entries := cs / 8
	perL1 := cs * l2Entries
	if h.size > 1<<62 {
		return nil, fmt.Errorf("%w: qcow2 virtual size %d above 2^62", ErrFormat, h.size)
	}
	needL1 := (h.size + perL1 - 1) / perL1
	if uint64(h.l1Size) < needL1 {
		return nil, fmt.Errorf("%w: qcow2 l1_size %d cannot map virtual size %d (needs %d entries)", ErrFormat, h.l1Size, h.size, needL1)
	}
	if uint64(h.l1Size)*8 > maxL1Bytes {
		return nil, fmt.Errorf("%w: qcow2 l1_size %d above the %d-byte limit", ErrUnsupported, h.l1Size, maxL1Bytes)
	}
	if err := checkTable("L1 table", h.l1Offset, uint64(h.l1Size)*8, cs, fileSize); err != nil {
		return nil, err
	}
	refBytes := uint64(h.refTableClusters) * cs
	if refBytes > maxRefTableBytes {
		return nil, fmt.Errorf("%w: qcow2 refcount table of %d clusters above the %d-byte limit", ErrUnsupported, h.refTableClusters, maxRefTableBytes)
	}
	if h.refTableClusters == 0 {
		return nil, fmt.Errorf("%w: qcow2 refcount table has no clusters", ErrFormat)
	}
	if err := checkTable("refcount table", h.refTableOffset, refBytes, cs, fileSize); err != nil {
		return nil, err
	}
	if h.nbSnapshots > 0 {
		if err := checkTable("snapshot table", h.snapshotsOffset, 0, cs, fileSize); err != nil {
			return nil, err
		}
	}
	if h.backingOffset != 0 || h.backingSize != 0 {
		if h.backingSize == 0 || h.backingSize > maxBackingName {
			return nil, fmt.Errorf("%w: qcow2 backing file name length %d outside 1..%d", ErrFormat, h.backingSize, maxBackingName)
		}
		end := h.backingOffset + uint64(h.backingSize)
		if h.backingOffset < uint64(h.headerLen) || end > cs || end > uint64(len(buf)) {
			return nil, fmt.Errorf("%w: qcow2 backing file name at %d+%d is outside the header cluster", ErrFormat, h.backingOffset, h.backingSize)
		}
		h.backingFile = string(buf[h.backingOffset:end])
	}
	return h, nil
}

// checkIncompatible refuses incompatible features this package cannot
// honour, naming them (from the feature table when it has the name).
func (h *header) checkIncompatible() error {
	bits := h.incompatible
	switch {
	case bits&incompatDirty != 0:
		return fmt.Errorf("%w: qcow2 image is dirty (lazy refcounts not flushed); run qemu-img check -r all", ErrUnsupported)
	case bits&incompatCorrupt != 0:
		return fmt.Errorf("%w: qcow2 image is marked corrupt; run qemu-img check -r all", ErrUnsupported)
	case bits&incompatExternalData != 0:
		return fmt.Errorf("%w: qcow2 external data file", ErrUnsupported)
	case bits&incompatExtendedL2 != 0:
		return fmt.Errorf("%w: qcow2 extended L2 entries (subclusters)", ErrUnsupported)
	case bits&incompatCompressionTyp != 0 && h.compressionType != 0:
		return fmt.Errorf("%w: qcow2 compression type %d (only 0, deflate)", ErrUnsupported, h.compressionType)
	}
	if h.compressionType != 0 {
		return fmt.Errorf("%w: qcow2 compression type %d without its incompatible bit", ErrFormat, h.compressionType)
	}
	if unknown := bits &^ (incompatDirty | incompatCorrupt | incompatExternalData | incompatCompressionTyp | incompatExtendedL2); unknown != 0 {
		var names []string
		for bit := range 64 {
			if unknown&(1<<bit) != 0 {
				if n, ok := h.featureNames[[2]byte{0, byte(bit)}]; ok && n != "" {
					names = append(names, fmt.Sprintf("%q (bit %d)", n, bit))
				} else {
					names = append(names, fmt.Sprintf("bit %d", bit))
				}
			}
		}
		return fmt.Errorf("%w: qcow2 unknown incompatible features %s", ErrUnsupported, strings.Join(names, ", "))
	}
	return nil
}

// parseExtensions walks the v3 header extensions (v2 images may carry them
// too, right after the 72-byte header), keeping the backing format and the
// feature name table and skipping the rest.
func (h *header) parseExtensions(buf []byte) error {
	be := binary.BigEndian
	off := uint64(h.headerLen)
	limit := uint64(len(buf))
	if h.backingOffset > off && h.backingOffset < limit {
		limit = h.backingOffset
	}
	for i := 0; ; i++ {
		if off+8 > limit {
			// v2 images without extensions end here; QEMU tolerates it.
			return nil
		}
		typ := be.Uint32(buf[off:])
		n := uint64(be.Uint32(buf[off+4:]))
		off += 8
		if typ == extEnd {
			return nil
		}
		if n > limit-off {
			return fmt.Errorf("%w: qcow2 header extension %#x of %d bytes runs past the header cluster", ErrFormat, typ, n)
		}
		data := buf[off : off+n]
		switch typ {
		case extBackingFormat:
			h.backingFormat = string(data)
		case extFeatureTable:
			h.featureNames = map[[2]byte]string{}
			for j := 0; j+48 <= len(data); j += 48 {
				name := data[j+2 : j+48]
				for k, c := range name {
					if c == 0 {
						name = name[:k]
						break
					}
				}
				h.featureNames[[2]byte{data[j], data[j+1]}] = string(name)
			}
		}
		off += (n + 7) &^ 7
	}
}

// checkTable checks that a table of n bytes at off is cluster-aligned and
// inside the file.
func checkTable(what string, off, n, cs, fileSize uint64) error {
	if off == 0 || off%cs != 0 {
		return fmt.Errorf("%w: qcow2 %s offset %#x is not a non-zero multiple of the cluster size %d", ErrFormat, what, off, cs)
	}
	if off > fileSize || n > fileSize-off {
		return fmt.Errorf("%w: qcow2 %s at %#x+%d runs past the end of the file (%d bytes)", ErrFormat, what, off, n, fileSize)
	}
	return nil
}

// digest returns the identity digest of the fields that do not change
// while the image is in use.
func (h *header) digest() string {
	s := sha256.New()
	var b [8]byte
	s.Write([]byte("qcow2\x00"))
	for _, v := range []uint64{uint64(h.version), uint64(h.clusterBits), h.size} {
		binary.BigEndian.PutUint64(b[:], v)
		s.Write(b[:])
	}
	s.Write([]byte(h.backingFile))
	s.Write([]byte{0})
	s.Write([]byte(h.backingFormat))
	return hex.EncodeToString(s.Sum(nil))
}
