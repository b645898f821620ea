package api

import (
	"errors"
	"testing"
)

// restoringFake is a Controller that can also restore.
type restoringFake struct {
	*fakeController
	restored []string
	cfgs     []RestoreConfig
	err      error
}

func (r *restoringFake) Restore(path string, cfg RestoreConfig) error {
	if r.err != nil {
		return r.err
	}
	if len(r.restored) > 0 {
		return StateErrorf("this VMM already has a VM")
	}
	r.restored = append(r.restored, path)
	r.cfgs = append(r.cfgs, cfg)
	return nil
}

func TestRestoreRoute(t *testing.T) {
	f := &restoringFake{fakeController: newFake()}
	s := startServer(t, f)
	body := []byte(`{"source_url": "file:///snaps/vm.snap", "resume": true}`)
	if r := rawDo(t, s.path, "PUT", "/api/v1/vm.restore", "application/json", body); r.status != 204 {
		t.Fatalf("vm.restore: status %d, body %s", r.status, r.body)
	}
	if len(f.restored) != 1 || f.restored[0] != "/snaps/vm.snap" || !f.cfgs[0].Resume {
		t.Errorf("Restore got %q %+v", f.restored, f.cfgs)
	}
	r := rawDo(t, s.path, "PUT", "/api/v1/vm.restore", "application/json", body)
	if r.status != 409 || errorMessage(t, r) != "this VMM already has a VM" {
		t.Errorf("second vm.restore: status %d, %s", r.status, r.body)
	}
	f2 := &restoringFake{fakeController: newFake(), err: errors.New("archive vm.snap: formats: checksum mismatch")}
	s2 := startServer(t, f2)
	r = rawDo(t, s2.path, "PUT", "/api/v1/vm.restore", "application/json", body)
	if r.status != 500 || errorMessage(t, r) != "archive vm.snap: formats: checksum mismatch" {
		t.Errorf("failed restore: status %d, %s", r.status, r.body)
	}
	r = rawDo(t, s2.path, "PUT", "/api/v1/vm.restore", "application/json", []byte(`{"source_url": "http://x/vm.snap"}`))
	if r.status != 400 {
		t.Errorf("non-file source_url: status %d", r.status)
	}
}
