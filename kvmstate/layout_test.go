package kvmstate

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// layoutCheck is one Go value that must equal a C expression evaluated
// against <linux/kvm.h>: a size, an offset, a constant or a request number.
type layoutCheck struct {
	group string // subtest: the Go struct, constant family or ioctl name
	what  string // the field or constant within it
	got   uint64 // the Go value
	cExpr string // the C expression it must equal
}

const kvmHeader = "/usr/include/linux/kvm.h"

// TestLayout compiles a C program that prints every expression in
// layoutChecks (see layout_unsafe_test.go) and the number of every request
// the package defines, then compares each with the Go value.
func TestLayout(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skipf("LAYOUT TEST SKIPPED: gcc not found (%v); install gcc to check the KVM mirrors against %s", err, kvmHeader)
	}
	if _, err := os.Stat(kvmHeader); err != nil {
		t.Skipf("LAYOUT TEST SKIPPED: %v; install linux-libc-dev to check the KVM mirrors", err)
	}

	checks := append([]layoutCheck(nil), layoutChecks()...)
	if len(requests) == 0 {
		t.Fatal("no ioctl requests registered")
	}
	for _, r := range requests {
		checks = append(checks, layoutCheck{group: r.name, what: "number", got: uint64(r.num), cExpr: r.name})
	}

	var src bytes.Buffer
	src.WriteString("#include <stddef.h>\n#include <stdio.h>\n#include <linux/kvm.h>\n#include <asm/prctl.h>\n\nint main(void) {\n")
	for i, c := range checks {
		fmt.Fprintf(&src, "\tprintf(\"%d %%llu\\n\", (unsigned long long)(%s));\n", i, c.cExpr)
	}
	src.WriteString("\treturn 0;\n}\n")

	dir := t.TempDir()
	cfile := filepath.Join(dir, "layout.c")
	bin := filepath.Join(dir, "layout")
	if err := os.WriteFile(cfile, src.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(gcc, "-std=gnu11", "-Wall", "-Werror", "-o", bin, cfile).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", cfile, err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("run %s: %v", bin, err)
	}

	want := make(map[int]uint64, len(checks))
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		idx, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			t.Fatalf("bad line from C program: %q", sc.Text())
		}
		i, err1 := strconv.Atoi(idx)
		v, err2 := strconv.ParseUint(val, 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad line from C program: %q", sc.Text())
		}
		want[i] = v
	}
	if len(want) != len(checks) {
		t.Fatalf("C program printed %d values, want %d", len(want), len(checks))
	}

	// One subtest per struct, constant family or ioctl, in first-seen order.
	var groups []string
	byGroup := map[string][]int{}
	for i, c := range checks {
		if _, seen := byGroup[c.group]; !seen {
			groups = append(groups, c.group)
		}
		byGroup[c.group] = append(byGroup[c.group], i)
	}
	for _, g := range groups {
		t.Run(g, func(t *testing.T) {
			for _, i := range byGroup[g] {
				c := checks[i]
				if c.got != want[i] {
					t.Errorf("%s: got %d (%#x), want %d (%#x) from %s", c.what, c.got, c.got, want[i], want[i], c.cExpr)
				}
			}
		})
	}
}
