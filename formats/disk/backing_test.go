package disk

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackingChainLoop refuses a→b→a and names the chain.
func TestBackingChainLoop(t *testing.T) {
	needQemu(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.qcow2"), filepath.Join(dir, "b.qcow2")
	// -u: do not open the backing file, which would loop in qemu-img too.
	run(t, "qemu-img", "create", "-f", "qcow2", "-u", "-b", "b.qcow2", "-F", "qcow2", a, "1M")
	run(t, "qemu-img", "create", "-f", "qcow2", "-u", "-b", "a.qcow2", "-F", "qcow2", b, "1M")
	for _, ro := range []bool{true, false} {
		d, err := Open(a, OpenOptions{ReadOnly: ro})
		if err == nil {
			d.Close()
			t.Fatalf("Open(ReadOnly=%v) of a looping chain succeeded", ro)
		}
		if !errors.Is(err, ErrBackingChain) {
			t.Errorf("error %v is not ErrBackingChain", err)
		}
		wantChain := a + " → " + b + " → " + a + " loops"
		if !strings.Contains(err.Error(), wantChain) {
			t.Errorf("error %q does not name the chain %q", err, wantChain)
		}
	}
}

// TestBackingChainDepth accepts MaxBackingChain backing files and refuses
// one more, naming the chain.
func TestBackingChainDepth(t *testing.T) {
	needQemu(t)
	dir := t.TempDir()
	// chain-0 is a raw base; chain-i (i ≥ 1) is qcow2 backed by chain-(i-1).
	name := func(i int) string {
		if i == 0 {
			return "chain-0.raw"
		}
		return fmt.Sprintf("chain-%d.qcow2", i)
	}
	run(t, "qemu-img", "create", "-f", "raw", filepath.Join(dir, name(0)), "1M")
	for i := 1; i <= MaxBackingChain+1; i++ {
		format := "qcow2"
		if i == 1 {
			format = "raw"
		}
		run(t, "qemu-img", "create", "-f", "qcow2", "-u", "-b", name(i-1), "-F", format, filepath.Join(dir, name(i)), "1M")
	}
	// chain-10 has 10 backing files below it: the limit, accepted.
	ok := filepath.Join(dir, name(MaxBackingChain))
	d, err := Open(ok, OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("Open of a chain of %d backing files: %v", MaxBackingChain, err)
	}
	buf := make([]byte, 4096)
	if _, err := d.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	d.Close()

	deep := filepath.Join(dir, name(MaxBackingChain+1))
	d, err = Open(deep, OpenOptions{ReadOnly: true})
	if err == nil {
		d.Close()
		t.Fatalf("Open of a chain of %d backing files succeeded", MaxBackingChain+1)
	}
	if !errors.Is(err, ErrBackingChain) {
		t.Errorf("error %v is not ErrBackingChain", err)
	}
	for _, want := range []string{deep + " → " + filepath.Join(dir, name(MaxBackingChain)), filepath.Join(dir, name(0)), fmt.Sprintf("deeper than %d", MaxBackingChain)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}
