// Package kubevolume lays files out the way the kubelet mounts a ConfigMap or Secret volume, so
// tests and tools can exercise the receiver's hot reload as it happens in a pod: each name is a
// symlink to ..data/<name>, and ..data is a symlink to a timestamped directory that an update
// replaces by renaming a new link over ..data (one atomic swap for all files).
package kubevolume

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Dir is a directory laid out like a mounted ConfigMap or Secret.
type Dir struct {
	path string
	gen  int
}

// New lays out files in dir.
func New(dir string, files map[string][]byte) (*Dir, error) {
	d := &Dir{path: dir}
	return d, d.Write(files)
}

// Path is where a file of the volume is read.
func (d *Dir) Path(name string) string { return filepath.Join(d.path, name) }

// Write replaces the volume's content with files in one atomic swap of ..data.
func (d *Dir) Write(files map[string][]byte) error {
	d.gen++
	gen := fmt.Sprintf("..2026_01_01_00_00_00.%d", d.gen)
	if err := os.Mkdir(filepath.Join(d.path, gen), 0o755); err != nil {
		return err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(d.path, gen, name), content, 0o644); err != nil {
			return err
		}
	}
	tmp := filepath.Join(d.path, "..data_tmp")
	if err := os.Symlink(gen, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(d.path, "..data")); err != nil {
		return err
	}
	// Like the kubelet, link new names after the swap.
	for name := range files {
		link := filepath.Join(d.path, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			return err
		}
	}
	return nil
}

// TestDir is a Dir in a test's temporary directory whose writes fail the test on error.
type TestDir struct{ *Dir }

// NewTestDir lays out files in a new temporary directory of t.
func NewTestDir(t testing.TB, files map[string]string) TestDir {
	t.Helper()
	d, err := New(t.TempDir(), asBytes(files))
	if err != nil {
		t.Fatal(err)
	}
	return TestDir{d}
}

// Update replaces the files, as the kubelet does when the ConfigMap or Secret changes.
func (d TestDir) Update(t testing.TB, files map[string]string) {
	t.Helper()
	if err := d.Write(asBytes(files)); err != nil {
		t.Fatal(err)
	}
}

func asBytes(files map[string]string) map[string][]byte {
	out := make(map[string][]byte, len(files))
	for name, content := range files {
		out[name] = []byte(content)
	}
	return out
}
