package ui

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestHandler(t *testing.T) {
	h := Handler()
	index, _ := FS.ReadFile("index.html")
	for _, tc := range []struct {
		path, want string
		code       int
		ctype      string
	}{
		// The pages of the application are index.html, whatever the depth.
		{"/console/en/login", string(index), 200, "text/html"},
		{"/console/en/monitoring", string(index), 200, "text/html"},
		{"/console/en/monitoring/modules/mirror/nodes/node2/logs", string(index), 200, "text/html"},
		{"/console/en/configuration/modules/vm1/config", string(index), 200, "text/html"},
		{"/console/index.html", string(index), 200, "text/html"},
		// Real assets, with the types browsers need for modules.
		{"/console/js/main.js", "import", 200, "text/javascript"},
		{"/console/css/app.css", "--accent: #90caf9", 200, "text/css"},
		{"/console/img/icon.svg", "<svg", 200, "image/svg+xml"},
		// A wrong asset path fails plainly instead of loading the page.
		{"/console/js/nothere.js", "404", 404, "text/plain"},
		{"/console/css/../js/nothere.js", "404", 404, "text/plain"},
	} {
		w := get(t, h, http.MethodGet, tc.path)
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.want) || !strings.HasPrefix(w.Header().Get("Content-Type"), tc.ctype) {
			t.Errorf("GET %s: %d %q, body %.60q; want %d %s containing %q", tc.path, w.Code, w.Header().Get("Content-Type"), w.Body.String(), tc.code, tc.ctype, tc.want)
		}
		if tc.code == 200 && (w.Header().Get("Content-Security-Policy") == "" || w.Header().Get("ETag") == "" || w.Header().Get("Cache-Control") != "no-cache") {
			t.Errorf("GET %s: headers %v", tc.path, w.Header())
		}
	}
	for _, p := range []string{"/console", "/console/"} {
		if w := get(t, h, http.MethodGet, p); w.Code != http.StatusFound || w.Header().Get("Location") != "/console/en/monitoring" {
			t.Errorf("GET %s: %d to %q, want the monitoring page", p, w.Code, w.Header().Get("Location"))
		}
	}
	if w := get(t, h, http.MethodPost, "/console/en/login"); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /console/en/login: %d, want 405", w.Code)
	}
	first := get(t, h, http.MethodGet, "/console/js/api.js")
	if w := get(t, h, http.MethodGet, "/console/js/api.js", "If-None-Match", first.Header().Get("ETag")); w.Code != http.StatusNotModified {
		t.Errorf("GET of an unchanged asset with its ETag: %d, want 304", w.Code)
	}
}

// TestSelfContained keeps the console free of remote resources: no URL
// with a scheme and a host in the pages, scripts or styles (the CSP would
// block them anyway, and an operator's network may have no Internet).
func TestSelfContained(t *testing.T) {
	remote := regexp.MustCompile(`(?i)\b(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	err := fs.WalkDir(FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := FS.ReadFile(p)
		for _, m := range remote.FindAll(b, -1) {
			// The SVG namespace is a name, never fetched.
			if string(m) != "http://www.w3.org" {
				t.Errorf("%s refers to %s", p, m)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
