package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/chsnap/chsnap/vm"
	"github.com/chsnap/chsnap/vm/api"
)

// version is chsnap's release version, reported by vmm.ping.
const version = "0.1.0-dev"

// controller exposes a running VM to the API server.
type controller struct {
	m    *vm.VM
	info api.VMConfigInfo
	// stateMu makes pause and resume check-then-act atomic against each
	// other, so two concurrent pauses cannot both succeed.
	stateMu sync.Mutex
}

func (c *controller) Info() (api.VMInfo, error) {
	state := api.StateRunning
	if c.m.Paused() {
		state = api.StatePaused
	}
	return api.VMInfo{State: state, Config: c.info, MemoryActualSize: c.info.Memory.Size}, nil
}

func (c *controller) Pause() error {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	if c.m.Paused() {
		return api.StateErrorf("the VM is already paused")
	}
	return c.m.Pause(5 * time.Second)
}

func (c *controller) Resume() error {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	if !c.m.Paused() {
		return api.StateErrorf("the VM is not paused")
	}
	return c.m.Resume()
}

func (c *controller) Snapshot(w io.Writer, opt api.SnapshotOptions) error {
	return c.m.Snapshot(w, vm.SnapshotOptions{LeavePaused: opt.LeavePaused, Progress: opt.Progress})
}

func (c *controller) SnapshotToFile(path string, opt api.SnapshotOptions) error {
	return c.m.SnapshotToFile(path, vm.SnapshotOptions{LeavePaused: opt.LeavePaused, Progress: opt.Progress})
}

func (c *controller) Shutdown() error {
	c.m.Shutdown()
	return nil
}

// serveAndRun puts m's API socket up at sock, runs m until it ends, takes
// the socket down and releases m. It returns nil when the guest powered off,
// rebooted or was shut down through the API.
func serveAndRun(c *cli.Context, m *vm.VM, sock string, info api.VMConfigInfo) error {
	l, err := api.Listen(sock)
	if err != nil {
		m.Close()
		return fmt.Errorf("API socket: %w", err)
	}
	srv := api.NewServer(&controller{m: m, info: info}, api.ServerOptions{Version: version, BuildVersion: version})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	reason, runErr := m.Run()

	// Let a vmm.shutdown reply (or a snapshot in flight) finish, briefly.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if err := srv.Shutdown(ctx); err != nil {
		srv.Close()
	}
	cancel()
	if err := <-served; err != nil {
		fmt.Fprintf(c.App.ErrWriter, "chsnap: API server: %v\n", err)
	}
	closeErr := m.Close()
	if runErr != nil {
		return runErr
	}
	if reason == vm.ExitStopped {
		return errors.New("vm stopped by the host")
	}
	return closeErr
}
