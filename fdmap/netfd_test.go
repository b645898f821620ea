package fdmap

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseNetFD(t *testing.T) {
	for _, c := range []struct {
		in     string
		id     string
		fd     int
		errMsg string
	}{
		{in: "net0=3", id: "net0", fd: 3},
		{in: "a=42", id: "a", fd: 42},
		{in: "Net_1-x=1000", id: "Net_1-x", fd: 1000},
		{in: "abcdefghijklmnopqrst=9", id: "abcdefghijklmnopqrst", fd: 9},
		{in: "net0", errMsg: "want ID=FD"},
		{in: "=3", errMsg: `id "" must be 1-20 characters`},
		{in: "abcdefghijklmnopqrstu=9", errMsg: "must be 1-20 characters"},
		{in: "net 0=3", errMsg: "must be 1-20 characters"},
		{in: "net.0=3", errMsg: "must be 1-20 characters"},
		{in: "nét=3", errMsg: "must be 1-20 characters"},
		{in: "net0=", errMsg: `"" is not a descriptor number`},
		{in: "net0=x", errMsg: `"x" is not a descriptor number`},
		{in: "net0=+3", errMsg: `"+3" is not a descriptor number`},
		{in: "net0=-3", errMsg: `"-3" is not a descriptor number`},
		{in: "net0=3=4", errMsg: `"3=4" is not a descriptor number`},
		{in: "net0=99999999999999999999", errMsg: "is not a descriptor number"},
		{in: "net0=2", errMsg: "fd 2 is a standard stream"},
		{in: "net0=0", errMsg: "fd 0 is a standard stream"},
	} {
		t.Run(c.in, func(t *testing.T) {
			id, fd, err := ParseNetFD(c.in)
			if c.errMsg != "" {
				if !errors.Is(err, ErrBadFD) || !strings.Contains(err.Error(), c.errMsg) {
					t.Fatalf("ParseNetFD(%q) = %q, %d, %v; want an ErrBadFD error containing %q", c.in, id, fd, err, c.errMsg)
				}
				return
			}
			if err != nil || id != c.id || fd != c.fd {
				t.Fatalf("ParseNetFD(%q) = %q, %d, %v; want %q, %d", c.in, id, fd, err, c.id, c.fd)
			}
		})
	}
}

func FuzzParseNetFD(f *testing.F) {
	for _, s := range []string{"net0=3", "a=42", "=3", "net0=", "net0=-1", "x=2", "abcdefghijklmnopqrstu=9", "n=+7", "n=0x10", "n=3=4", "é=3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, fd, err := ParseNetFD(s)
		if err != nil {
			if !errors.Is(err, ErrBadFD) {
				t.Fatalf("ParseNetFD(%q) error %v does not wrap ErrBadFD", s, err)
			}
			return
		}
		if !ValidID(id) || fd < 3 {
			t.Fatalf("ParseNetFD(%q) accepted id %q fd %d", s, id, fd)
		}
		// What was accepted is exactly the canonical spelling.
		if canon := id + "=" + strconv.Itoa(fd); canon != s {
			// Leading zeros are the one allowed difference.
			if id2, fd2, err := ParseNetFD(canon); err != nil || id2 != id || fd2 != fd {
				t.Fatalf("ParseNetFD(%q) = %q, %d, but %q does not parse back: %q, %d, %v", s, id, fd, canon, id2, fd2, err)
			}
			if !strings.HasPrefix(s, id+"=0") {
				t.Fatalf("ParseNetFD(%q) = %q, %d: input is not the canonical %q", s, id, fd, canon)
			}
		}
	})
}

// bindCase sets up offers on a Set and says what Bind must answer.
type bindCase struct {
	name string
	// setup adds offers and returns the raw fd numbers it handed over, all
	// of which Bind must close on error.
	setup func(t *testing.T, s *Set) []int
	want  []Want
	// wantErr is the sentinel; wantMsgs are substrings (with %d verbs
	// filled from the fds setup returned, in order).
	wantErr  error
	wantMsgs []string
	// wantBound is, on success, how many files each id gets.
	wantBound map[string]int
}

func TestBind(t *testing.T) {
	ns := newNetns(t)
	warmUp(t)
	vnetTap := func(t *testing.T, name string) int { return ns.tun(t, name, tapFlags|vnet) }
	net0 := []Want{{ID: "net0", NumFDs: 1, Flags: FlagTAP | FlagNoPI | FlagVnetHdr}}
	two := append(append([]Want(nil), net0...), Want{ID: "net1", NumFDs: 1, Flags: FlagTAP | FlagNoPI})
	inherit := func(t *testing.T, s *Set, id string, fd int) {
		t.Helper()
		if err := s.AddInherited(id, fd); err != nil {
			t.Fatalf("AddInherited(%s, %d): %v", id, fd, err)
		}
	}
	receive := func(s *Set, id string, fds ...int) {
		files := make([]*os.File, len(fds))
		for i, fd := range fds {
			files[i] = os.NewFile(uintptr(fd), "received")
		}
		s.AddReceived(id, files)
	}

	cases := []bindCase{
		{name: "one-inherited", want: net0, wantBound: map[string]int{"net0": 1},
			setup: func(t *testing.T, s *Set) []int { fd := vnetTap(t, "b0"); inherit(t, s, "net0", fd); return []int{fd} }},
		{name: "two-devices-inherited-and-received", want: two, wantBound: map[string]int{"net0": 1, "net1": 1},
			setup: func(t *testing.T, s *Set) []int {
				a, b := vnetTap(t, "b1"), ns.tun(t, "b2", tapFlags)
				inherit(t, s, "net0", a)
				receive(s, "net1", b)
				return []int{a, b}
			}},
		{name: "multiqueue", want: []Want{{ID: "net0", NumFDs: 2, Flags: FlagTAP | FlagNoPI | FlagVnetHdr}}, wantBound: map[string]int{"net0": 2},
			setup: func(t *testing.T, s *Set) []int {
				a := ns.tun(t, "mq0", tapFlags|vnet|unix.IFF_MULTI_QUEUE)
				b := ns.tun(t, "mq0", tapFlags|vnet|unix.IFF_MULTI_QUEUE)
				receive(s, "net0", a, b)
				return []int{a, b}
			}},
		{name: "missing", want: two, wantErr: ErrBinding,
			wantMsgs: []string{"net1: no fd given; the snapshot needs 1"},
			setup:    func(t *testing.T, s *Set) []int { fd := vnetTap(t, "b3"); inherit(t, s, "net0", fd); return []int{fd} }},
		{name: "none-offered", want: net0, wantErr: ErrBinding,
			wantMsgs: []string{"net0: no fd given; the snapshot needs 1 (pass --net-fd net0=FD"},
			setup:    func(t *testing.T, s *Set) []int { return nil }},
		{name: "unknown", want: net0, wantErr: ErrBinding,
			wantMsgs: []string{`net9: fd %[2]d given, but the snapshot has no fd-backed device "net9" (it has net0)`},
			setup: func(t *testing.T, s *Set) []int {
				a, b := vnetTap(t, "b4"), vnetTap(t, "b5")
				inherit(t, s, "net0", a)
				inherit(t, s, "net9", b)
				return []int{a, b}
			}},
		{name: "unknown-bad-id-received", want: net0, wantErr: ErrBinding,
			wantMsgs: []string{`"bad id!": received fd %[2]d given, but the snapshot has no fd-backed device`},
			setup: func(t *testing.T, s *Set) []int {
				a, b := vnetTap(t, "b6"), vnetTap(t, "b7")
				inherit(t, s, "net0", a)
				receive(s, "bad id!", b)
				return []int{a, b}
			}},
		{name: "duplicate", want: net0, wantErr: ErrBinding,
			wantMsgs: []string{"net0: fd %[2]d given again (fd %[1]d given first)"},
			setup: func(t *testing.T, s *Set) []int {
				a, b := vnetTap(t, "b8"), vnetTap(t, "b9")
				inherit(t, s, "net0", a)
				inherit(t, s, "net0", b)
				return []int{a, b}
			}},
		{name: "wrong-count", want: net0, wantErr: ErrBinding,
			wantMsgs: []string{"net0: received fds %[1]d, %[2]d given, the snapshot needs 1"},
			setup: func(t *testing.T, s *Set) []int {
				a, b := vnetTap(t, "c0"), vnetTap(t, "c1")
				receive(s, "net0", a, b)
				return []int{a, b}
			}},
		{name: "regular-file", want: net0, wantErr: ErrNotTap,
			wantMsgs: []string{"net0: fdmap: not a usable tap device: fd %[1]d is a regular file, not a tap device"},
			setup:    func(t *testing.T, s *Set) []int { fd := rawFile(t); inherit(t, s, "net0", fd); return []int{fd} }},
		{name: "pipe", want: net0, wantErr: ErrNotTap,
			wantMsgs: []string{"net0: fdmap: not a usable tap device: fd %[1]d is a pipe, not a tap device"},
			setup: func(t *testing.T, s *Set) []int {
				r, w := rawPipe(t)
				unix.Close(w)
				inherit(t, s, "net0", r)
				return []int{r}
			}},
		{name: "tun", want: net0, wantErr: ErrNotTap,
			wantMsgs: []string{"net0: fdmap: not a usable tap device: fd %[1]d is tun device c2"},
			setup: func(t *testing.T, s *Set) []int {
				fd := ns.tun(t, "c2", unix.IFF_TUN|unix.IFF_NO_PI)
				inherit(t, s, "net0", fd)
				return []int{fd}
			}},
		{name: "vnet-mismatch", want: net0, wantErr: ErrNotTap,
			wantMsgs: []string{"net0: fdmap: not a usable tap device: fd %[1]d is tap c3 without IFF_VNET_HDR, which the snapshot recorded"},
			setup: func(t *testing.T, s *Set) []int {
				fd := ns.tun(t, "c3", tapFlags)
				inherit(t, s, "net0", fd)
				return []int{fd}
			}},
		{name: "multiqueue-two-taps", want: []Want{{ID: "net0", NumFDs: 2, Flags: FlagTAP | FlagNoPI | FlagVnetHdr}}, wantErr: ErrNotTap,
			wantMsgs: []string{"net0: fd %[2]d is a queue of tap mq2, but fd %[1]d is of tap mq1"},
			setup: func(t *testing.T, s *Set) []int {
				a := ns.tun(t, "mq1", tapFlags|vnet|unix.IFF_MULTI_QUEUE)
				b := ns.tun(t, "mq2", tapFlags|vnet|unix.IFF_MULTI_QUEUE)
				receive(s, "net0", a, b)
				return []int{a, b}
			}},
		{name: "several-problems-all-reported", want: two, wantErr: ErrBinding,
			wantMsgs: []string{"net1: no fd given", "net0: fdmap: not a usable tap device: fd %[1]d is a regular file", "net2: fd %[2]d given, but"},
			setup: func(t *testing.T, s *Set) []int {
				a, b := rawFile(t), vnetTap(t, "c4")
				inherit(t, s, "net0", a)
				inherit(t, s, "net2", b)
				return []int{a, b}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := countFDs(t)
			var s Set
			fds := c.setup(t, &s)
			got, err := s.Bind(c.want)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("Bind error = %v, want %v", err, c.wantErr)
				}
				args := make([]any, len(fds))
				for i, fd := range fds {
					args[i] = fd
				}
				for _, m := range c.wantMsgs {
					if strings.Contains(m, "%") {
						m = fmt.Sprintf(m, args...)
					}
					if !strings.Contains(err.Error(), m) {
						t.Errorf("Bind error = %q\nwant it to contain %q", err, m)
					}
				}
				if got != nil {
					t.Errorf("Bind returned files %v with an error", got)
				}
				for _, fd := range fds {
					if isOpen(fd) {
						t.Errorf("fd %d still open after a failed Bind", fd)
					}
				}
				checkNoLeak(t, before)
				return
			}
			if err != nil {
				t.Fatalf("Bind: %v", err)
			}
			if len(got) != len(c.wantBound) {
				t.Errorf("Bind bound %d devices, want %d", len(got), len(c.wantBound))
			}
			n := 0
			for id, files := range got {
				if len(files) != c.wantBound[id] {
					t.Errorf("Bind gave %s %d files, want %d", id, len(files), c.wantBound[id])
				}
				for _, f := range files {
					n++
					fd := fdNum(f)
					if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
						t.Errorf("%s: bound fd %d flags %#x, %v; want FD_CLOEXEC", id, fd, flags, err)
					}
					if _, err := CheckTap(f, wantFlags(c.want, id)); err != nil {
						t.Errorf("%s: bound file no longer a usable tap: %v", id, err)
					}
				}
			}
			if n != len(fds) {
				t.Errorf("Bind handed out %d files, %d were offered", n, len(fds))
			}
			// The set is spent: Close closes nothing the caller owns.
			s.Close()
			for _, fd := range fds {
				if !isOpen(fd) {
					t.Errorf("fd %d closed by Close after a successful Bind", fd)
				}
			}
			for _, files := range got {
				for _, f := range files {
					if err := f.Close(); err != nil {
						t.Errorf("close bound file: %v (closed twice?)", err)
					}
				}
			}
			checkNoLeak(t, before)
		})
	}
}

func wantFlags(want []Want, id string) uint32 {
	for _, w := range want {
		if w.ID == id {
			return w.Flags
		}
	}
	return 0
}

func TestAddInheritedRefuses(t *testing.T) {
	warmUp(t)
	before := countFDs(t)
	var s Set
	defer s.Close()

	cloexec, err := os.Open(os.DevNull) // O_CLOEXEC, as everything Go opens
	if err != nil {
		t.Fatal(err)
	}
	defer cloexec.Close()

	r, w := rawPipe(t)
	if err := s.AddInherited("net0", r); err != nil {
		t.Fatalf("AddInherited(net0, %d): %v", r, err)
	}
	closedFD := w
	unix.Close(closedFD)

	for _, c := range []struct {
		name    string
		id      string
		fd      int
		wantErr error
		wantMsg string
	}{
		{"closed-fd", "net1", closedFD, ErrBadFD, fmt.Sprintf("net1: fdmap: bad file descriptor: fd %d for net-fd net1=%d is not open", closedFD, closedFD)},
		{"stdin", "net1", 0, ErrBadFD, "0 is a standard stream"},
		{"stderr", "net1", 2, ErrBadFD, "2 is a standard stream"},
		{"same-number-twice", "net1", r, ErrBinding, fmt.Sprintf("net1: fd %d was already given for net0", r)},
		{"not-inherited", "net1", fdNum(cloexec), ErrBadFD, fmt.Sprintf("net1: fd %d was not inherited (it is close-on-exec", fdNum(cloexec))},
		{"bad-id", "net/1", 9, ErrBadFD, "id must be 1-20 characters"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := s.AddInherited(c.id, c.fd)
			if !errors.Is(err, c.wantErr) || !strings.Contains(err.Error(), c.wantMsg) {
				t.Errorf("AddInherited(%s, %d) = %v; want %v containing %q", c.id, c.fd, err, c.wantErr, c.wantMsg)
			}
		})
	}
	// The refused fds were not taken: the Go-opened one is still open and
	// still its owner's to close.
	if !isOpen(fdNum(cloexec)) {
		t.Errorf("AddInherited closed an fd it refused")
	}
	cloexec.Close()
	s.Close()
	if isOpen(r) {
		t.Errorf("Close left adopted fd %d open", r)
	}
	// After Close the set takes nothing more, and received files given to
	// it are closed at once.
	r2, w2 := rawPipe(t)
	unix.Close(w2)
	if err := s.AddInherited("net2", r2); !errors.Is(err, ErrBinding) {
		t.Errorf("AddInherited after Close = %v, want ErrBinding", err)
	}
	unix.Close(r2)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s.AddReceived("net3", []*os.File{pr, pw})
	if err := pr.Close(); err == nil {
		t.Errorf("AddReceived after Close kept the file open")
	}
	checkNoLeak(t, before)
}

func TestAddRequest(t *testing.T) {
	warmUp(t)
	before := countFDs(t)
	pipes := func(n int) []*os.File {
		var files []*os.File
		for len(files) < n {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, r, w)
		}
		for _, f := range files[n:] {
			f.Close()
		}
		return files[:n:n]
	}

	// Counts that do not add up: every file closed, error names both counts.
	for _, c := range []struct {
		name string
		list []NetFDs
		n    int
		msg  string
	}{
		{"too-few", []NetFDs{{"net0", 1}, {"net1", 2}}, 2, "net_fds asks for 3 fds, the request carried 2"},
		{"too-many", []NetFDs{{"net0", 1}}, 2, "net_fds asks for 1 fds, the request carried 2"},
		{"zero", []NetFDs{{"net0", 0}}, 0, `net_fds entry "net0": num_fds 0 is not between 1 and 256`},
		{"negative", []NetFDs{{"net0", -1}, {"net1", 2}}, 1, "num_fds -1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			files := pipes(c.n)
			var s Set
			err := s.AddRequest(c.list, files)
			if !errors.Is(err, ErrBinding) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("AddRequest = %v, want ErrBinding containing %q", err, c.msg)
			}
			for _, f := range files {
				if err := f.Close(); err == nil {
					t.Errorf("AddRequest left %s open after refusing", f.Name())
				}
			}
			s.Close()
		})
	}
	checkNoLeak(t, before)

	// Counts that add up: files split in order, as Cloud Hypervisor does.
	files := pipes(3)
	var s Set
	if err := s.AddRequest([]NetFDs{{"net0", 2}, {"net1", 1}}, files); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	if len(s.offers) != 2 || s.offers[0].id != "net0" || len(s.offers[0].files) != 2 || s.offers[0].files[1] != files[1] ||
		s.offers[1].id != "net1" || len(s.offers[1].files) != 1 || s.offers[1].files[0] != files[2] {
		t.Errorf("AddRequest split = %+v, want net0 files 0-1, net1 file 2", s.offers)
	}
	s.mu.Unlock()
	s.Close()
	checkNoLeak(t, before)
}

func TestBindTwice(t *testing.T) {
	var s Set
	if _, err := s.Bind(nil); err != nil {
		t.Fatalf("Bind(nothing) on an empty set: %v", err)
	}
	if _, err := s.Bind(nil); !errors.Is(err, ErrBinding) {
		t.Errorf("second Bind = %v, want ErrBinding", err)
	}
}

func TestBindRefusesBadWants(t *testing.T) {
	for _, c := range []struct {
		name string
		want []Want
		msg  string
	}{
		{"bad-id", []Want{{ID: "", NumFDs: 1}}, `snapshot device id "" is not valid`},
		{"zero-fds", []Want{{ID: "net0", NumFDs: 0}}, "net0: snapshot records 0 fds, want 1-256"},
		{"twice", []Want{{ID: "net0", NumFDs: 1}, {ID: "net0", NumFDs: 1}}, "net0: snapshot lists the device twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var s Set
			_, err := s.Bind(c.want)
			if !errors.Is(err, ErrBinding) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("Bind(%+v) = %v, want ErrBinding containing %q", c.want, err, c.msg)
			}
		})
	}
}

func TestBindings(t *testing.T) {
	a, b := new(os.File), new(os.File) // only compared, never used
	want := []Want{{ID: "net1", NumFDs: 1}, {ID: "net0", NumFDs: 1}, {ID: "net2", NumFDs: 1}}
	got := Bindings(want, map[string][]*os.File{"net0": {a}, "net1": {b}})
	if len(got) != 2 || got[0].ID != "net1" || got[0].Files[0] != b || got[1].ID != "net0" || got[1].Files[0] != a {
		t.Errorf("Bindings = %+v, want net1 then net0", got)
	}
}
