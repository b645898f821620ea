package fdmap

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseFD(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"3", 3, true},
		{"42", 42, true},
		{"0", 0, false},
		{"2", 0, false},
		{"-1", 0, false},
		{"x", 0, false},
		{"", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseFD(tc.in)
			if tc.ok != (err == nil) {
				t.Fatalf("ParseFD(%q) error = %v, want ok=%v", tc.in, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrBadFD) {
				t.Errorf("ParseFD(%q) error %v is not ErrBadFD", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseFD(%q) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func TestAdoptOwnsOnce(t *testing.T) {
	// Raw descriptors, as an inherited fd arrives: nothing else owns them.
	var p [2]int
	if err := unix.Pipe2(p[:], 0); err != nil {
		t.Fatal(err)
	}
	r := os.NewFile(uintptr(p[0]), "pipe-r")
	defer r.Close()
	f, err := Adopt(p[1], "serial")
	if err != nil {
		t.Fatalf("Adopt(%d): %v", p[1], err)
	}
	if flags, err := unix.FcntlInt(uintptr(p[1]), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("adopted fd flags = %#x, %v; want FD_CLOEXEC set", flags, err)
	}
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatalf("write through adopted fd: %v", err)
	}
	buf := make([]byte, 1)
	if _, err := r.Read(buf); err != nil || buf[0] != 'x' {
		t.Fatalf("read back %q, %v", buf, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("first close: %v", err)
	}
	if err := f.Close(); err == nil {
		t.Fatal("second close of the adopted file succeeded; want an error")
	}
	if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_GETFD, 0); err == nil {
		t.Errorf("fd %d still open after Close", p[1])
	}
}

func TestAdoptRejects(t *testing.T) {
	if _, err := Adopt(1, "stdout"); !errors.Is(err, ErrBadFD) {
		t.Errorf("Adopt(1) error = %v, want ErrBadFD", err)
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())
	f.Close()
	if _, err := Adopt(fd, "closed"); !errors.Is(err, ErrBadFD) {
		t.Errorf("Adopt(closed fd %d) error = %v, want ErrBadFD", fd, err)
	}
}
