//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chsnap/chsnap/formats"
)

// doctorCPUID rewrites an archive so that every vCPU's saved CPUID claims
// leaf 7 EBX and ECX bits set to all ones: features no host has all of.
func doctorCPUID(t *testing.T, in, out string) {
	t.Helper()
	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := formats.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := formats.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for {
		s, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if s.Kind == formats.KindVCPU {
			var v map[string]any
			if err := json.Unmarshal(s.Payload, &v); err != nil {
				t.Fatal(err)
			}
			for _, e := range v["CPUID"].([]any) {
				m := e.(map[string]any)
				if m["Function"].(float64) == 7 && m["Index"].(float64) == 0 {
					m["EBX"], m["ECX"] = float64(0xFFFFFFFF), float64(0xFFFFFFFF)
				}
			}
			if s.Payload, err = json.Marshal(v); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.WriteSection(s.Kind, s.ID, s.Payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreCPUMismatch: an archive whose guest saw CPU features this host
// lacks is refused, naming the leaf; --allow-cpu-mismatch restores it with
// warnings.
func TestRestoreCPUMismatch(t *testing.T) {
	needKVM(t)
	dir := shortDir(t)
	p, sock := bootFilledSized(t, dir, 1, "64M", 8)
	snap := filepath.Join(dir, "vm.snap")
	chsnapOK(t, "save", "--api-socket", sock, snap)
	p.cmd.Process.Kill()
	bad := filepath.Join(dir, "doctored.snap")
	doctorCPUID(t, snap, bad)

	status, stderr := runChsnap(t, nil, "restore", bad, "--api-socket", filepath.Join(dir, "x.sock"))
	checkOneLineError(t, status, stderr, 1, "--allow-cpu-mismatch")
	if !strings.Contains(stderr, "0x7") && !strings.Contains(stderr, "leaf 7") {
		t.Errorf("the refusal does not name leaf 7: %s", stderr)
	}
	r := startChsnap(t, "restore", bad, "--allow-cpu-mismatch", "--api-socket", filepath.Join(dir, "y.sock"))
	r.command(t, "verify", "verify ok")
	r.send(t, "poweroff")
	if st := r.wait(t, 30*time.Second); st != 0 {
		t.Errorf("exit %d; stderr:\n%s", st, r.stderr)
	}
	if !strings.Contains(r.stderr.String(), "warning") {
		t.Errorf("no warning printed for the allowed mismatch:\n%s", r.stderr)
	}
}
