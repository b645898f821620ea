package vm

import (
	"bytes"
	"log"
	"testing"
)

// TestLogfUsesConfigLogger: a VM's non-fatal problems go to the logger in
// its config, not to standard error directly.
func TestLogfUsesConfigLogger(t *testing.T) {
	var buf bytes.Buffer
	v := &VM{cfg: Config{Host: Host{Logger: log.New(&buf, "test: ", 0)}}}
	v.logf("net %s: %v", "net0", "announce failed")
	if got, want := buf.String(), "test: net net0: announce failed\n"; got != want {
		t.Errorf("logged %q, want %q", got, want)
	}
}
