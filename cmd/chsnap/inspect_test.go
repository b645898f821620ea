package main

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

var goldenArchive = filepath.Join("..", "..", "testdata", "golden", "guest-v1.0.chs")

// editedGolden writes a copy of the golden archive, with valid checksums,
// whose config payload went through edit.
func editedGolden(t *testing.T, edit func([]byte) []byte) string {
	t.Helper()
	f, err := os.Open(goldenArchive)
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
		if s.Kind == formats.KindConfig {
			s.Payload = edit(s.Payload)
		}
		if err := aw.WriteSection(s.Kind, s.ID, s.Payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "edited.chs")
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestInspectRefusesWhatVerifyRefuses: inspect and verify --json read
// through one decoder, so an archive verify refuses makes inspect exit
// non-zero too, and inspect never shows a config that does not validate
// (issue 14.7 found "cpus": -1 with exit 0).
func TestInspectRefusesWhatVerifyRefuses(t *testing.T) {
	for name, edit := range map[string]func([]byte) []byte{
		"cpus -1":           func(p []byte) []byte { return bytes.Replace(p, []byte(`"cpus":1`), []byte(`"cpus":-1`), 1) },
		"Memory for memory": func(p []byte) []byte { return bytes.Replace(p, []byte(`"memory":`), []byte(`"Memory":`), 1) },
	} {
		t.Run(name, func(t *testing.T) {
			path := editedGolden(t, edit)
			for _, args := range [][]string{{"inspect", "--json", path}, {"inspect", path}, {"verify", "--json", path}} {
				var stdout, stderr bytes.Buffer
				code := run(append([]string{"chsnap"}, args...), &stdout, &stderr)
				if code == 0 {
					t.Errorf("%v: exit 0, want a refusal", args)
				}
				if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || stderr.Len() == 0 {
					t.Errorf("%v: want one error line, got %q", args, stderr.String())
				}
				if out := stdout.String(); strings.Contains(out, `"cpus": -1`) || strings.Contains(out, "vCPUs:     -1") {
					t.Errorf("%v printed the invalid config:\n%s", args, stdout.String())
				}
			}
		})
	}
}

// TestInspectMatchesVerify: for a good archive, inspect --json shows the
// same vCPUs, memory and devices as verify --json, and verify's archive
// block is filled.
func TestInspectMatchesVerify(t *testing.T) {
	var in, ver, stderr bytes.Buffer
	if code := run([]string{"chsnap", "inspect", "--json", goldenArchive}, &in, &stderr); code != 0 {
		t.Fatalf("inspect: exit %d: %s", code, stderr.String())
	}
	if code := run([]string{"chsnap", "verify", "--json", goldenArchive}, &ver, &stderr); code != 0 {
		t.Fatalf("verify: exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{`"cpus": 1`, `"memory": 16777216`, `"acpi-power"`} {
		if !strings.Contains(in.String(), want) || !strings.Contains(ver.String(), want) {
			t.Errorf("%s missing from inspect or verify --json:\n%s\n%s", want, in.String(), ver.String())
		}
	}
	if !strings.Contains(ver.String(), `"format_version": "1.0"`) || !strings.Contains(ver.String(), `"memory-chunk"`) {
		t.Errorf("verify --json's archive block is not filled:\n%s", ver.String())
	}
}
