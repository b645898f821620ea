// Package api is chsnap's control socket: HTTP/1.1 with JSON bodies over a
// unix socket, the server side (Server, driven by a Controller that package
// vm implements) and the client side (Client, used by the chsnap CLI).
//
// Endpoint names, methods and body field names follow Cloud Hypervisor's
// API (vmm/src/api/openapi/cloud-hypervisor.yaml) where the two overlap, so
// a client written for Cloud Hypervisor works unchanged for these calls:
//
//	GET /api/v1/vmm.ping            200 PingResponse (VmmPingResponse)
//	GET /api/v1/vm.info             200 VMInfo (VmInfo)
//	PUT /api/v1/vm.pause            204; 409 when already paused
//	PUT /api/v1/vm.resume           204; 409 when not paused
//	PUT /api/v1/vmm.shutdown        204; the process then exits 0
//	PUT /api/v1/vm.snapshot         SnapshotConfig (VmSnapshotConfig) → 204
//	PUT /api/v1/vm.restore          RestoreConfig → 501 (use `chsnap restore`)
//	PUT /api/v1/vm.snapshot.stream  chsnap extension: StreamConfig → 200,
//	                                the archive as the (chunked) body
//
// openapi.yaml beside this file describes exactly what is served; a test
// checks it against the server's route table both ways.
//
// Where chsnap differs from Cloud Hypervisor, on purpose:
//   - every error body is JSON {"error": "message"} (Cloud Hypervisor sends
//     a plain string, or in later releases a JSON array of messages; Client
//     understands all three);
//   - a known path called with the wrong method gets 405 with an Allow
//     header (Cloud Hypervisor answers 400);
//   - a state conflict (pause while paused) is 409 (Cloud Hypervisor: 405
//     for some, 500 for others);
//   - vm.snapshot's destination_url names the archive file, not a
//     directory, and must be file:// with an absolute path;
//   - request bodies are at most MaxBodySize bytes (413 beyond) and unknown
//     fields are refused with 400 (Cloud Hypervisor ignores them).
//
// vm.snapshot.stream answers 200 with Content-Type application/octet-stream,
// the header Chsnap-Memory-Bytes (guest RAM in bytes, when known) and the
// archive as a chunked body. A failure before the first byte gets an ordinary
// JSON error response; a failure after it ends the body normally and sets the
// HTTP trailer Chsnap-Error to the message, so a client must check the
// trailer (Client.SnapshotStream does) before trusting the archive.
//
// The socket is created with mode 0600 (see Listen); its default path is
// DefaultSocketPath(name): $XDG_RUNTIME_DIR/chsnap/NAME.sock, or
// /run/chsnap/NAME.sock when XDG_RUNTIME_DIR is unset.
package api
