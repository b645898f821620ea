package fdmap

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrBinding is returned when the descriptors offered for fd-backed devices
// do not match the devices a snapshot needs: a device with no fd, an fd for a
// device the snapshot does not have, a device offered twice, or the wrong
// number of fds for a device.
var ErrBinding = errors.New("fdmap: bad fd binding")

// MaxIDLen is the longest device id ParseNetFD accepts.
const MaxIDLen = 20

// ValidID reports whether id can name a network device: 1 to MaxIDLen
// characters from [A-Za-z0-9_-].
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ParseNetFD parses one value of the repeatable --net-fd ID=FD flag, for
// example "net0=3". The id is 1 to MaxIDLen characters of [A-Za-z0-9_-]; the
// fd is a decimal number of at least 3, since chsnap never adopts its own
// standard streams. Errors wrap ErrBadFD.
func ParseNetFD(s string) (id string, fd int, err error) {
	id, num, ok := strings.Cut(s, "=")
	if !ok {
		return "", 0, fmt.Errorf("%w: --net-fd %q: want ID=FD, as in net0=3", ErrBadFD, s)
	}
	if !ValidID(id) {
		return "", 0, fmt.Errorf("%w: --net-fd %q: id %q must be 1-%d characters of A-Z a-z 0-9 _ -", ErrBadFD, s, id, MaxIDLen)
	}
	// strconv.Atoi accepts a sign; a descriptor number never has one.
	if num == "" || num[0] < '0' || num[0] > '9' {
		return "", 0, fmt.Errorf("%w: --net-fd %q: %q is not a descriptor number", ErrBadFD, s, num)
	}
	fd, err = strconv.Atoi(num)
	if err != nil {
		return "", 0, fmt.Errorf("%w: --net-fd %q: %q is not a descriptor number", ErrBadFD, s, num)
	}
	if fd <= 2 {
		return "", 0, fmt.Errorf("%w: --net-fd %q: fd %d is a standard stream (0-2); pass another descriptor", ErrBadFD, s, fd)
	}
	return id, fd, nil
}

// Binding is the set of descriptors bound to one fd-backed device: one fd per
// queue pair of a tap, in queue order. Whoever holds a Binding owns its files.
type Binding struct {
	ID    string
	Files []*os.File
}

// Bindings lists what Bind returned in the order of want (the snapshot's
// device order), skipping ids Bind did not bind. Ownership of the files
// moves with them; the map is left as it was.
func Bindings(want []Want, bound map[string][]*os.File) []Binding {
	var bs []Binding
	for _, w := range want {
		if files, ok := bound[w.ID]; ok {
			bs = append(bs, Binding{ID: w.ID, Files: files})
		}
	}
	return bs
}

// Want is what a snapshot records about one fd-backed network device.
type Want struct {
	// ID is the device id, as in --net-fd ID=FD.
	ID string
	// NumFDs is how many descriptors the device needs (one per queue pair).
	NumFDs int
	// Flags are the IFF_* flags TUNGETIFF reported when the snapshot was
	// taken; CheckTap compares the new fds against them.
	Flags uint32
}

// NetFDs is one entry of the "net_fds" list in the body of
// PUT /api/v1/vm.restore, as Cloud Hypervisor defines it: the device id and
// how many of the descriptors sent with SCM_RIGHTS on that request are its.
type NetFDs struct {
	ID     string `json:"id"`
	NumFDs int    `json:"num_fds"`
}

// offer is one Add call: an id and the descriptors offered for it.
type offer struct {
	id    string
	files []*os.File
	// received is true for descriptors that came with SCM_RIGHTS: their
	// numbers are this process's, not ones the user typed.
	received bool
}

// Set collects the descriptors offered for fd-backed devices, from
// --net-fd flags and from SCM_RIGHTS, and binds them to the devices a
// snapshot needs. It owns every descriptor added to it until Bind hands the
// bound ones to the caller or Close closes them.
//
// A Set is safe for concurrent use. The zero value is an empty set.
type Set struct {
	mu sync.Mutex
	// offers is guarded by mu, in the order the descriptors were added.
	offers []offer
	// inherited maps each adopted fd number to its id; guarded by mu.
	inherited map[int]string
	// done is set by Bind and Close; guarded by mu.
	done bool
}

// AddInherited adopts the inherited descriptor fd (see Adopt) for device id.
// On success the set owns fd. It fails, without taking ownership, when id is
// invalid, fd is 0-2 or not open, the same fd number was already added, or fd
// is close-on-exec: a descriptor inherited across exec never is, so such an
// fd was opened by chsnap itself (by the Go runtime, say) and adopting it
// would steal it from its owner.
func (s *Set) AddInherited(id string, fd int) error {
	if !ValidID(id) {
		return fmt.Errorf("%w: --net-fd %s=%d: id must be 1-%d characters of A-Z a-z 0-9 _ -", ErrBadFD, id, fd, MaxIDLen)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return fmt.Errorf("%w: --net-fd %s=%d: the fds were already bound", ErrBinding, id, fd)
	}
	if prev, ok := s.inherited[fd]; ok {
		return fmt.Errorf("%w: %s: fd %d was already given for %s", ErrBinding, id, fd, prev)
	}
	if fd > 2 {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err == nil && flags&unix.FD_CLOEXEC != 0 {
			return fmt.Errorf("%w: %s: fd %d was not inherited (it is close-on-exec, so chsnap opened it itself)", ErrBadFD, id, fd)
		}
	}
	f, err := Adopt(fd, "net-fd "+id+"="+strconv.Itoa(fd))
	if err != nil {
		return fmt.Errorf("%s: %w", id, err)
	}
	if s.inherited == nil {
		s.inherited = make(map[int]string)
	}
	s.inherited[fd] = id
	s.offers = append(s.offers, offer{id: id, files: []*os.File{f}})
	return nil
}

// AddReceived takes ownership of files, received with SCM_RIGHTS for device
// id, and marks them close-on-exec (ReceiveFDs already has; files from
// elsewhere may not be). Nothing else is checked here: Bind
// refuses an invalid or unknown id, a duplicate and a wrong type. If the set
// was already bound or closed, the files are closed at once.
func (s *Set) AddReceived(id string, files []*os.File) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		closeAll(files)
		return
	}
	var keep []*os.File
	for _, f := range files {
		if f != nil {
			setCloexec(f)
			keep = append(keep, f)
		}
	}
	s.offers = append(s.offers, offer{id: id, files: keep, received: true})
}

// AddRequest splits the descriptors received with a vm.restore request
// among the request's "net_fds" entries in order, as Cloud Hypervisor does:
// the first entry's NumFDs files go to its id, the next ones to the next
// entry, and so on. It takes ownership of all files. If the counts do not
// add up to len(files), or an entry's count is not positive, it closes all
// files and returns an error wrapping ErrBinding.
func (s *Set) AddRequest(list []NetFDs, files []*os.File) error {
	total := 0
	for _, e := range list {
		if e.NumFDs < 1 || e.NumFDs > maxFDsPerDevice {
			closeAll(files)
			return fmt.Errorf("%w: net_fds entry %q: num_fds %d is not between 1 and %d", ErrBinding, e.ID, e.NumFDs, maxFDsPerDevice)
		}
		total += e.NumFDs
	}
	if total != len(files) {
		closeAll(files)
		parts := make([]string, len(list))
		for i, e := range list {
			parts[i] = fmt.Sprintf("%s: %d", printID(e.ID), e.NumFDs)
		}
		return fmt.Errorf("%w: net_fds asks for %d fds, the request carried %d (wanted: %s; the fds travel as SCM_RIGHTS with the request)",
			ErrBinding, total, len(files), strings.Join(parts, ", "))
	}
	for _, e := range list {
		s.AddReceived(e.ID, files[:e.NumFDs:e.NumFDs])
		files = files[e.NumFDs:]
	}
	return nil
}

// maxFDsPerDevice bounds NumFDs: a tap has at most 256 queues
// (MAX_TAP_QUEUES in drivers/net/tun.c), and one message carries at most 253
// descriptors (SCM_MAX_FD).
const maxFDsPerDevice = 256

// Close closes every descriptor the set still holds. It is safe to call
// after Bind (it then closes nothing) and more than once; after Close the set
// accepts no more descriptors.
func (s *Set) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	for _, o := range s.offers {
		closeAll(o.files)
	}
	s.offers = nil
}

// Bind binds the offered descriptors to the devices in want, the fd-backed
// devices a snapshot records. Every wanted id must have been offered exactly
// once, with exactly NumFDs descriptors, each a tap CheckTap accepts for
// Want.Flags; a device with several fds needs them all on one interface with
// IFF_MULTI_QUEUE. Offers for ids not in want are refused too: an unused fd
// is more likely a typo than intent.
//
// On success the caller owns the returned files (by id, in queue order) and
// the set is empty. On any error every descriptor the set held is closed,
// and the error (errors.Join of one error per problem, each naming the
// device and the fd) wraps ErrBinding, ErrNotTap or ErrBadFD. Bind can run
// once; the set accepts no more descriptors afterwards.
func (s *Set) Bind(want []Want) (map[string][]*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return nil, fmt.Errorf("%w: the fds were already bound or closed", ErrBinding)
	}
	s.done = true
	offers := s.offers
	s.offers = nil

	var errs []error
	wanted := make(map[string]Want, len(want))
	var wantIDs []string
	for _, w := range want {
		switch {
		case !ValidID(w.ID):
			errs = append(errs, fmt.Errorf("%w: snapshot device id %q is not valid", ErrBinding, w.ID))
		case w.NumFDs < 1 || w.NumFDs > maxFDsPerDevice:
			errs = append(errs, fmt.Errorf("%w: %s: snapshot records %d fds, want 1-%d", ErrBinding, w.ID, w.NumFDs, maxFDsPerDevice))
		default:
			if _, dup := wanted[w.ID]; dup {
				errs = append(errs, fmt.Errorf("%w: %s: snapshot lists the device twice", ErrBinding, w.ID))
				continue
			}
			wanted[w.ID] = w
			wantIDs = append(wantIDs, w.ID)
		}
	}

	first := make(map[string]offer, len(offers))
	firstIdx := make(map[string]int, len(offers))
	for i, o := range offers {
		if _, ok := wanted[o.id]; !ok {
			errs = append(errs, fmt.Errorf("%w: %s: %s given, but the snapshot has no fd-backed device %q (it has %s)",
				ErrBinding, printID(o.id), describe(o), o.id, idList(wantIDs)))
			continue
		}
		if prev, dup := first[o.id]; dup {
			errs = append(errs, fmt.Errorf("%w: %s: %s given again (%s given first); give each device's fds once",
				ErrBinding, o.id, describe(o), describe(prev)))
			continue
		}
		first[o.id] = o
		firstIdx[o.id] = i
	}

	bound := make(map[string][]*os.File, len(wantIDs))
	for _, id := range wantIDs {
		w := wanted[id]
		o, ok := first[id]
		if !ok {
			errs = append(errs, fmt.Errorf("%w: %s: no fd given; the snapshot needs %d (pass --net-fd %s=FD, or send it with vm.restore)",
				ErrBinding, id, w.NumFDs, id))
			continue
		}
		if len(o.files) != w.NumFDs {
			errs = append(errs, fmt.Errorf("%w: %s: %s given, the snapshot needs %d",
				ErrBinding, id, describe(o), w.NumFDs))
			continue
		}
		var name string
		okAll := true
		for i, f := range o.files {
			info, err := CheckTap(f, w.Flags)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w%s", id, err, receivedNote(o)))
				okAll = false
				continue
			}
			if w.NumFDs > 1 {
				if info.Flags&FlagMultiQueue == 0 {
					errs = append(errs, fmt.Errorf("%w: %s: fd %d is tap %s without IFF_MULTI_QUEUE, but the device has %d queue fds%s",
						ErrNotTap, id, fdNum(f), info.Name, w.NumFDs, receivedNote(o)))
					okAll = false
				}
				if i == 0 {
					name = info.Name
				} else if info.Name != name {
					errs = append(errs, fmt.Errorf("%w: %s: fd %d is a queue of tap %s, but fd %d is of tap %s; all of a device's fds must be queues of one tap%s",
						ErrNotTap, id, fdNum(f), info.Name, fdNum(o.files[0]), name, receivedNote(o)))
					okAll = false
				}
			}
		}
		if okAll {
			bound[id] = o.files
		}
	}

	if len(errs) > 0 {
		for _, o := range offers {
			closeAll(o.files)
		}
		return nil, errors.Join(errs...)
	}
	// Offers not bound were refused above (unknown or duplicate ids), so
	// every offer is bound here; close any stragglers anyway so the
	// "nothing leaks" promise does not hang on that reasoning.
	for i, o := range offers {
		if j, ok := firstIdx[o.id]; !ok || i != j {
			closeAll(o.files)
		}
	}
	return bound, nil
}

// describe names the descriptors of an offer for error messages: "fd 7",
// "fds 7, 8", or "no fds".
func describe(o offer) string {
	if len(o.files) == 0 {
		return "no fds"
	}
	nums := make([]string, len(o.files))
	for i, f := range o.files {
		nums[i] = strconv.Itoa(fdNum(f))
	}
	word := "fd "
	if len(nums) > 1 {
		word = "fds "
	}
	if o.received {
		word = "received " + word
	}
	return word + strings.Join(nums, ", ")
}

func receivedNote(o offer) string {
	if o.received {
		return " (received with SCM_RIGHTS; the number is chsnap's)"
	}
	return ""
}

// fdNum returns f's descriptor number for messages, without f.Fd's side
// effect of switching the descriptor to blocking mode.
func fdNum(f *os.File) int {
	n := -1
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { n = int(fd) })
	}
	return n
}

// printID quotes an id that is not valid, so odd bytes from a request body
// show up plainly in the message.
func printID(id string) string {
	if ValidID(id) {
		return id
	}
	return strconv.Quote(id)
}

func idList(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	s := append([]string(nil), ids...)
	sort.Strings(s)
	return strings.Join(s, ", ")
}

func closeAll(files []*os.File) {
	for _, f := range files {
		if f != nil {
			_ = f.Close()
		}
	}
}

// setCloexec marks f's descriptor close-on-exec, without f.Fd's side effect
// of switching it to blocking mode.
func setCloexec(f *os.File) {
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { unix.CloseOnExec(int(fd)) })
	}
}

// Offered reports whether descriptors were offered for device id.
func (s *Set) Offered(id string) bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.offers {
		if o.id == id {
			return true
		}
	}
	return false
}

// IDs lists the device ids descriptors were offered for, in the order they
// were added, each once.
func (s *Set) IDs() []string {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, o := range s.offers {
		if !slices.Contains(ids, o.id) {
			ids = append(ids, o.id)
		}
	}
	return ids
}

// Describe names the descriptors offered for id, as "fd 5", "fds 5, 6" or
// "received fd 9", for messages; "no fds" when none were.
func (s *Set) Describe(id string) string {
	if s == nil {
		return "no fds"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []string
	for _, o := range s.offers {
		if o.id == id {
			parts = append(parts, describe(o))
		}
	}
	if len(parts) == 0 {
		return "no fds"
	}
	return strings.Join(parts, " and ")
}
