//go:build unix

package archive

import (
	"io"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestWriteRefusesFifo: a named pipe in a module tree (left by some tool)
// is refused rather than packed as a file or read forever.
func TestWriteRefusesFifo(t *testing.T) {
	root := filepath.Join(t.TempDir(), "mirror")
	writeTree(t, root, sampleModule)
	if err := syscall.Mkfifo(filepath.Join(root, "bin", "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Write(io.Discard, root)
	if want := "bin/pipe: named pipe: a module archive holds only regular files and directories"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Write: %v\nwant an error with %q", err, want)
	}
}
