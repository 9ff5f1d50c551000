package worker

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gdirty/gdirty/pyshim"
)

// ExtractShim writes the embedded gdirty_pyshim package under dir and
// returns the directory to put on the workers' sys.path.
func ExtractShim(dir string) (string, error) {
	root := filepath.Join(dir, "pyshim")
	err := fs.WalkDir(pyshim.Files, pyshim.PackageDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(root, filepath.FromSlash(path))
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		data, err := pyshim.Files.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o600)
	})
	if err != nil {
		return "", fmt.Errorf("extract python shim into %s: %w", root, err)
	}
	return root, nil
}

// bootstrap runs a shim module with the extracted package first on
// sys.path, without touching PYTHONPATH (which the user's apps inherit).
func bootstrap(shimDir, module string) string {
	return fmt.Sprintf("import sys; sys.path.insert(0, %q); import runpy; sys.argv[0] = %q; runpy.run_module(%q, run_name='__main__', alter_sys=True)",
		shimDir, module, module)
}
