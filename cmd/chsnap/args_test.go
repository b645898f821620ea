package main

import (
	"slices"
	"testing"
)

func TestInterspersed(t *testing.T) {
	app := newApp(nil, nil)
	for _, tc := range []struct{ in, want []string }{
		{[]string{"chsnap", "restore", "vm.snap", "--paused", "--api-socket", "/s"}, []string{"chsnap", "restore", "--paused", "--api-socket", "/s", "vm.snap"}},
		{[]string{"chsnap", "restore", "--api-socket=/s", "vm.snap"}, []string{"chsnap", "restore", "--api-socket=/s", "vm.snap"}},
		{[]string{"chsnap", "restore", "-", "--serial", "off"}, []string{"chsnap", "restore", "--serial", "off", "-"}},
		{[]string{"chsnap", "save", "out.snap", "--name", "web1"}, []string{"chsnap", "save", "--name", "web1", "out.snap"}},
		{[]string{"chsnap", "inspect", "--", "--odd-name.snap"}, []string{"chsnap", "inspect", "--", "--odd-name.snap"}},
		{[]string{"chsnap", "nosuch", "a", "--b"}, []string{"chsnap", "nosuch", "a", "--b"}},
		{[]string{"chsnap"}, []string{"chsnap"}},
	} {
		if got := interspersed(app, tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("interspersed(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
