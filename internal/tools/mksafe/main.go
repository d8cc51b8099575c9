// Command mksafe packs the project's module templates
// (modules/templates/<name>) into <out>/<name>.safe at build time.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/safekit-oss/safekit/safe/archive"
)

func main() {
	src := flag.String("src", "modules/templates", "directory of the templates")
	out := flag.String("out", "build/Application_Modules/generic", "where to write the .safe files")
	flag.Parse()
	entries, err := os.ReadDir(*src)
	if err != nil {
		fail(err)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fail(err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(*src, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "conf", "userconfig.xml")); err != nil {
			continue
		}
		dst := filepath.Join(*out, e.Name()+".safe")
		if err := archive.WriteFile(dst, dir); err != nil {
			fail(fmt.Errorf("%s: %w", dir, err))
		}
		fmt.Println(dst)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mksafe:", err)
	os.Exit(1)
}
