package vm

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chsnap/chsnap/formats"
)

// goldenPath is the archive format 1.0 fixture (see scripts/make-golden.sh).
var goldenPath = filepath.Join("..", "testdata", "golden", "guest-v1.0.chs")

// TestVerifyGolden reads the golden archive as a restore would, without KVM:
// every section, every state section decoded strictly, memory decompressed
// and every chunk hash checked. A chsnap that cannot read it would not
// restore the snapshots its users already have.
func TestVerifyGolden(t *testing.T) {
	f, err := os.Open(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := VerifyArchive(f)
	if err != nil {
		t.Fatalf("golden archive: %v", err)
	}
	if rep.CPUs != 1 || rep.Memory != 16<<20 {
		t.Errorf("golden archive describes %d vCPUs and %d bytes, want 1 and 16 MiB", rep.CPUs, rep.Memory)
	}
	if rep.Memstat.Chunks-rep.Memstat.ZeroChunks == 0 {
		t.Errorf("golden archive stores no memory: %+v", rep.Memstat)
	}
}

// TestVerifyRefusesDamage flips a byte in each section of the golden archive
// and truncates it: every variant is refused with a sentinel error.
func TestVerifyRefusesDamage(t *testing.T) {
	good, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	_, _, table, err := formats.ReadTable(bytes.NewReader(good), int64(len(good)))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range table {
		b := bytes.Clone(good)
		b[s.Offset+24+int64(s.Length)/2] ^= 0x01
		_, err := VerifyArchive(bytes.NewReader(b))
		if !errors.Is(err, formats.ErrChecksum) {
			t.Errorf("flip in %s %d: error %v, want ErrChecksum", s.Kind, s.ID, err)
		}
	}
	for _, n := range []int{0, 10, 100, len(good) / 2, len(good) - 1} {
		if _, err := VerifyArchive(bytes.NewReader(good[:n])); err == nil {
			t.Errorf("archive truncated to %d bytes accepted", n)
		}
	}
}

// rewriteGolden copies the golden archive section by section, with valid
// checksums, passing each payload through edit.
func rewriteGolden(t *testing.T, edit func(s formats.Section) []byte) []byte {
	t.Helper()
	f, err := os.Open(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ar, err := formats.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	aw, err := formats.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	for {
		s, err := ar.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := aw.WriteSection(s.Kind, s.ID, edit(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// flipKeyCase changes the case of the first letter of the first key after
// marker in p; ok is false when there is no such key.
func flipKeyCase(p []byte, marker string) (_ []byte, ok bool) {
	i := bytes.Index(p, []byte(marker))
	if i < 0 || i+len(marker) >= len(p) {
		return p, false
	}
	q := bytes.Clone(p)
	c := &q[i+len(marker)]
	switch {
	case 'a' <= *c && *c <= 'z':
		*c -= 'a' - 'A'
	case 'A' <= *c && *c <= 'Z':
		*c += 'a' - 'A'
	default:
		return p, false
	}
	return q, true
}

// TestVerifyRefusesCaseChangedKeys: state sections are decoded with exact
// key matching (issue 14.7): "Memory" is not "memory", in any state section
// or inside a device's state. The unchanged copy verifies.
func TestVerifyRefusesCaseChangedKeys(t *testing.T) {
	same := rewriteGolden(t, func(s formats.Section) []byte { return s.Payload })
	if _, err := VerifyArchive(bytes.NewReader(same)); err != nil {
		t.Fatalf("unchanged copy: %v", err)
	}
	for _, tc := range []struct {
		kind   formats.SectionKind
		marker string
	}{
		{formats.KindConfig, `{"`},
		{formats.KindHostResource, `[{"`},
		{formats.KindVCPU, `{"`},
		{formats.KindVM, `{"`},
		{formats.KindDevice, `{"`},
		{formats.KindDevice, `"state":{"`},
	} {
		edited := false
		data := rewriteGolden(t, func(s formats.Section) []byte {
			if s.Kind != tc.kind || edited {
				return s.Payload
			}
			p, ok := flipKeyCase(s.Payload, tc.marker)
			edited = ok
			return p
		})
		if !edited {
			t.Errorf("%s: no key after %s", tc.kind, tc.marker)
			continue
		}
		if _, err := VerifyArchive(bytes.NewReader(data)); err == nil {
			t.Errorf("%s with the first key after %s case-changed: accepted", tc.kind, tc.marker)
		} else {
			t.Logf("%s: %v", tc.kind, err)
		}
	}
	// The config's "memory" itself, as the issue found it.
	data := rewriteGolden(t, func(s formats.Section) []byte {
		if s.Kind == formats.KindConfig {
			return bytes.Replace(s.Payload, []byte(`"memory":`), []byte(`"Memory":`), 1)
		}
		return s.Payload
	})
	if _, err := VerifyArchive(bytes.NewReader(data)); err == nil || !strings.Contains(err.Error(), `"Memory"`) {
		t.Errorf(`config with "Memory": %v, want a refusal naming the key`, err)
	}
}

// TestVerifyRefusesStrayResource: a host resource must name a device of the
// archive, of its kind.
func TestVerifyRefusesStrayResource(t *testing.T) {
	for name, res := range map[string]string{
		"no such device": `{"device":"net9","kind":"net","fds":1}`,
		"wrong kind":     `{"device":"com1","kind":"disk","fds":0}`,
	} {
		data := rewriteGolden(t, func(s formats.Section) []byte {
			if s.Kind != formats.KindHostResource {
				return s.Payload
			}
			return bytes.Replace(s.Payload, []byte(`"resources":[`), []byte(`"resources":[`+res+`,`), 1)
		})
		if _, err := VerifyArchive(bytes.NewReader(data)); !errors.Is(err, errNotRestorable) {
			t.Errorf("%s: %v, want errNotRestorable", name, err)
		}
	}
}
