// Package ui is the browser side of the web console: a single-page
// application in plain HTML, CSS and JavaScript modules, embedded in the
// binary and served under /console/. Nothing is fetched from anywhere
// else: no CDN, no remote font. The pages talk to the connection node's API
// (/api/v1.0/...) only, through js/api.js.
package ui

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// FS holds the application: index.html and the assets under css/, js/ and
// img/.
//
//go:embed index.html css js img
var FS embed.FS

// Prefix is where Handler expects to be mounted.
const Prefix = "/console/"

// csp keeps the pages to their own origin; connect-src 'self' covers the
// websockets of the same host and port.
const csp = "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; style-src 'self'; " +
	"script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// Handler serves the console under /console/: the files of FS as they are
// (/console/js/api.js), and index.html for any other path, so that a reload
// of /console/en/monitoring/modules/AM/nodes/node1/logs shows that page. A
// missing file under css/, js/ or img/ is a 404, so that a wrong asset path
// fails plainly. /console and /console/ lead to the monitoring page.
func Handler() http.Handler {
	etags := map[string]string{}
	_ = fs.WalkDir(FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := FS.ReadFile(p)
		sum := sha256.Sum256(b)
		etags[p] = `"` + hex.EncodeToString(sum[:12]) + `"`
		return err
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		rel, _ := strings.CutPrefix(r.URL.Path, Prefix)
		rel = strings.TrimPrefix(path.Clean("/"+rel), "/")
		if rel == "" || !strings.HasPrefix(r.URL.Path, Prefix) {
			http.Redirect(w, r, Prefix+"en/monitoring", http.StatusFound)
			return
		}
		if _, ok := etags[rel]; !ok {
			if top, _, _ := strings.Cut(rel, "/"); top == "css" || top == "js" || top == "img" {
				http.NotFound(w, r)
				return
			}
			rel = "index.html"
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", csp)
		h.Set("Referrer-Policy", "same-origin")
		// Revalidated at each load: a new binary shows at once, an
		// unchanged file costs a 304.
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", etags[rel])
		f, err := FS.Open(rel)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		http.ServeContent(w, r, rel, time.Time{}, f.(io.ReadSeeker))
	})
}
