package formats

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// TestReadErrorNamesOffsetOnce: a read that fails for another reason than
// running out (here: the archive is a directory) names the place once.
func TestReadErrorNamesOffsetOnce(t *testing.T) {
	d, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, err = NewReader(d)
	if err == nil {
		t.Fatal("NewReader on a directory succeeded")
	}
	if got := strings.Count(err.Error(), "at offset"); got != 1 || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("error %q: want one \"at offset\" and the cause", err)
	}
	if errors.Is(err, ErrTruncated) {
		t.Errorf("error %q is ErrTruncated; the read failed, the archive is not short", err)
	}
}
