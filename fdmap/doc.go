// Package fdmap is the one way file descriptors from outside enter chsnap:
// descriptors named on the command line (inherited from the parent, as
// exec.Cmd.ExtraFiles passes them) and descriptors received with SCM_RIGHTS
// on the API socket. It validates each descriptor, takes ownership of it,
// marks it close-on-exec, and closes each exactly once. It does not open
// taps by name or enter network namespaces (the net device's setup does),
// and it does not decide what a snapshot needs: callers pass that in as
// []Want.
//
// # Ownership
//
// Adopt, Set.AddInherited, Set.AddReceived, Set.AddRequest and ReceiveFDs
// take ownership of what they are given (AddInherited only when it
// succeeds). A Set owns its descriptors until Bind hands the bound ones to
// the caller; on any Bind error, and on Close, it closes all of them.
// CheckTap and SendFDs only borrow.
//
// # Network fds on restore
//
// A snapshot records, for each fd-backed network device, its id, how many
// fds it had (one per queue pair) and the IFF_* flags TUNGETIFF reported.
// On restore the fds come either from repeated --net-fd ID=FD flags
// (ParseNetFD, then Set.AddInherited) or from a PUT /api/v1/vm.restore
// request whose body carries Cloud Hypervisor's
// "net_fds": [{"id": "net0", "num_fds": 1}] and whose fds came with
// SCM_RIGHTS (Set.AddRequest: as in Cloud Hypervisor, the request's fds are
// dealt out to the entries in order). Set.Bind then checks the whole
// binding before any vCPU runs: each device bound once, with exactly its
// number of fds, each a tap CheckTap accepts; anything missing, unknown,
// duplicated or of the wrong type is refused with an error naming the device
// and the fd. (Cloud Hypervisor checks only the total count, and dup()s the
// received fds, keeping the originals open.)
//
// Kernel facts CheckTap relies on:
//   - /dev/net/tun is misc device 10:200; a macvtap or ipvtap is /dev/tapN
//     with a dynamic major, and TUNGETIFF works on both (drivers/net/tun.c,
//     drivers/net/tap.c). A macvtap always has IFF_TAP|IFF_NO_PI, and
//     IFF_VNET_HDR from open on.
//   - tun.c ORs IFF_NOFILTER ("no socket filter attached") into TUNGETIFF's
//     answer, and IFF_NOFILTER == IFF_NO_PI == 0x1000. To tell a tap that
//     prepends packet information apart, CheckTap briefly attaches a
//     pass-everything filter to a tap that never had one (see tunNoPI).
//   - An unattached /dev/net/tun fd answers TUNGETIFF with EBADFD.
//
// # SCM_RIGHTS on the HTTP API
//
// ReceiveFDs reads one message with room for a given number of fds; fds
// beyond the room are discarded by the kernel, which sets MSG_CTRUNC, and
// then ReceiveFDs closes the ones that did arrive and fails. At most 253
// fds (SCM_MAX_FD) travel in one message. On a stream socket Linux sends no
// fds with a zero-byte message, so a sender must put them on a write that
// carries data (SendFDs enforces this).
//
// net/http reads the connection through a bufio.Reader with plain reads,
// and a read without room for control data makes the kernel drop (close)
// the fds that came with those bytes: by the time a handler runs, it is too
// late to call ReceiveFDs on the connection. Hence NewListener: it wraps
// the API listener, and every Read of an accepted connection is a recvmsg
// with room for 253 fds; what arrives is held on the connection (a *Conn)
// until a handler takes it. The API server is wired as
//
//	srv := &http.Server{Handler: fdmap.CloseUntaken(mux), ConnContext: fdmap.ConnContext}
//	srv.Serve(fdmap.NewListener(l, maxPending))
//
// and the vm.restore handler, after decoding the body, calls
// fdmap.TakeFDs(r.Context()) and Set.AddRequest(body.NetFDs, files). Reading
// the body first matters: a client may send the fds with the body's write
// rather than the headers'; fds are held no later than the read that
// returns the first byte of the write that carried them (a stream recvmsg
// stops after the segment whose fds it picked up). CloseUntaken closes fds
// that a request brought but its handler did not take, so they cannot
// leak or be credited to the next request; Conn.Close closes what is still
// held. A connection that sends more than maxPending untaken fds is broken
// off. Pipelined requests that carry fds are not supported (bufio may read
// the next request, and its fds, before the current handler takes them);
// Cloud Hypervisor's ch-remote sends one request per connection.
//
// Receiving the first message at accept time, before net/http sees the
// connection, was considered and rejected: fds may come on a later request
// of a keep-alive connection, or with the body.
package fdmap
