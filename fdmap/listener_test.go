package fdmap

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// restoreBody is the part of a vm.restore body the test server reads.
type restoreBody struct {
	NetFDs []NetFDs `json:"net_fds"`
}

// startAPI serves, on a Unix socket, a vm.restore handler that splits the
// received fds with AddRequest and writes a line through each to prove it
// got the right ones, and a vm.info handler that takes no fds.
// The returned stop shuts the server down and waits for it.
func startAPI(t *testing.T) (sock string, stop func()) {
	t.Helper()
	sock = t.TempDir() + "/api.sock"
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /api/v1/vm.restore", func(w http.ResponseWriter, r *http.Request) {
		var body restoreBody
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var s Set
		defer s.Close()
		if err := s.AddRequest(body.NetFDs, TakeFDs(r.Context())); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, o := range s.offers {
			for i, f := range o.files {
				fmt.Fprintf(f, "%s/%d\n", o.id, i)
			}
		}
		fmt.Fprintf(w, "bound %d devices\n", len(s.offers))
	})
	mux.HandleFunc("GET /api/v1/vm.info", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "running")
	})
	srv := &http.Server{Handler: CloseUntaken(mux), ConnContext: ConnContext, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(NewListener(ul, 8)) }()
	return sock, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}
}

// request sends one HTTP request over c with files attached to its first
// (and only) write, and returns the response status and body.
func request(t *testing.T, c *net.UnixConn, br *bufio.Reader, method, path, body string, files []*os.File) (int, string) {
	t.Helper()
	req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", method, path, len(body), body)
	if err := SendFDs(c, []byte(req), files); err != nil {
		t.Fatalf("send %s %s: %v", method, path, err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("response to %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestListenerHTTP(t *testing.T) {
	warmUp(t)
	before := countFDs(t)
	func() {
		sock, stop := startAPI(t)
		defer stop()
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)

		// vm.restore with three fds for two devices, on one keep-alive
		// connection, twice: the fds go where net_fds says, in order.
		for round := 0; round < 2; round++ {
			w, r := pipes(t, 3)
			code, body := request(t, c, br, "PUT", "/api/v1/vm.restore",
				`{"source_url":"file:///x","net_fds":[{"id":"net0","num_fds":2},{"id":"net1","num_fds":1}]}`, w)
			closeFiles(w)
			if code != http.StatusOK || body != "bound 2 devices\n" {
				t.Fatalf("round %d: vm.restore = %d %q", round, code, body)
			}
			for i, want := range []string{"net0/0\n", "net0/1\n", "net1/0\n"} {
				got, err := bufio.NewReader(r[i]).ReadString('\n')
				if err != nil || got != want {
					t.Errorf("round %d: pipe %d got %q, %v; want %q", round, i, got, err, want)
				}
			}
			// The server closed its copies: the pipes now read EOF.
			for i, pr := range r {
				if _, err := pr.Read(make([]byte, 1)); err != io.EOF {
					t.Errorf("round %d: pipe %d: the server kept its fd (read err %v)", round, i, err)
				}
			}
			closeFiles(r)
		}

		// Counts that do not match: refused, fds closed.
		w, r := pipes(t, 2)
		code, body := request(t, c, br, "PUT", "/api/v1/vm.restore", `{"net_fds":[{"id":"net0","num_fds":1}]}`, w)
		closeFiles(w)
		if code != http.StatusBadRequest || !strings.Contains(body, "net_fds asks for 1 fds, the request carried 2") {
			t.Errorf("vm.restore with 2 fds for 1 = %d %q", code, body)
		}
		for i, pr := range r {
			if _, err := pr.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("refused request: pipe %d still open in the server (read err %v)", i, err)
			}
		}
		closeFiles(r)

		// fds sent with a request that takes none are closed after it.
		w, r = pipes(t, 1)
		code, body = request(t, c, br, "GET", "/api/v1/vm.info", "", w)
		closeFiles(w)
		if code != http.StatusOK || body != "running\n" {
			t.Errorf("vm.info = %d %q", code, body)
		}
		if _, err := r[0].Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("untaken fd still open in the server (read err %v)", err)
		}
		closeFiles(r)
	}()
	checkNoLeak(t, before)
}

func TestListenerTooManyPending(t *testing.T) {
	warmUp(t)
	before := countFDs(t)
	func() {
		sock, stop := startAPI(t)
		defer stop()
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// 9 fds with the headers of a request whose body never comes:
		// more than the 8 the listener holds, so the connection ends and
		// all 9 are closed.
		w, r := pipes(t, 9)
		if err := SendFDs(c, []byte("PUT /api/v1/vm.restore HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"), w); err != nil {
			t.Fatal(err)
		}
		closeFiles(w)
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("read until the server hangs up: %v", err)
		}
		for i, pr := range r {
			if _, err := pr.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("pipe %d still open in the server (read err %v)", i, err)
			}
		}
		closeFiles(r)
	}()
	checkNoLeak(t, before)
}
