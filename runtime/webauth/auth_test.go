package webauth

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// logbook collects what the Authenticator logs.
type logbook struct {
	mu    sync.Mutex
	lines []string
}

func (l *logbook) warnf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logbook) take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.Join(l.lines, "\n")
	l.lines = nil
	return s
}

// serve sends one request through Require(role) and returns the answer
// and the caller the handler saw.
func serve(a *Authenticator, role, user, pwd string) (*httptest.ResponseRecorder, *Caller) {
	var seen *Caller
	h := a.Require(role, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := CallerFrom(r.Context())
		seen = &c
	}))
	req := httptest.NewRequest(http.MethodPost, "/api/v1.0/cli", nil)
	req.RemoteAddr = "10.0.0.9:40000"
	if user != "" || pwd != "" {
		req.SetBasicAuth(user, pwd)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w, seen
}

func TestRequire(t *testing.T) {
	r := roots(t)
	if err := SetRcmdPassword(r, DefaultRcmdUser, "good"); err != nil {
		t.Fatal(err)
	}
	var log logbook
	a := New(r, log.warnf)
	for _, tc := range []struct {
		name, user, pwd string
		code            int
		log             string
	}{
		{"no credentials", "", "", http.StatusUnauthorized, "refused web request POST /api/v1.0/cli from 10.0.0.9:40000: no credentials"},
		{"wrong password", "rcmdadmin", "bad", http.StatusUnauthorized, "from 10.0.0.9:40000: user rcmdadmin: wrong password"},
		{"unknown user", "mallory", "good", http.StatusUnauthorized, "user mallory: unknown user"},
		{"right password", "rcmdadmin", "good", http.StatusOK, ""},
		{"right password, cached", "rcmdadmin", "good", http.StatusOK, ""},
	} {
		w, seen := serve(a, RoleAdmin, tc.user, tc.pwd)
		if w.Code != tc.code {
			t.Errorf("%s: %d %s, want %d", tc.name, w.Code, w.Body, tc.code)
		}
		got := log.take()
		if tc.log != "" && !strings.Contains(got, tc.log) || tc.log == "" && got != "" {
			t.Errorf("%s: logged %q, want %q", tc.name, got, tc.log)
		}
		switch {
		case tc.code == http.StatusUnauthorized:
			if seen != nil {
				t.Errorf("%s: the handler ran", tc.name)
			}
			if w.Header().Get("WWW-Authenticate") == "" || strings.Contains(w.Body.String(), "unknown") {
				t.Errorf("%s: answer %v %q (a challenge, and nothing that tells which users exist)", tc.name, w.Header(), w.Body)
			}
		case seen == nil || seen.String() != "rcmdadmin@10.0.0.9" || seen.Unsecure:
			t.Errorf("%s: caller %+v", tc.name, seen)
		}
	}
	if len(a.cache) != 1 {
		t.Errorf("cache of %d entries after one verified credential", len(a.cache))
	}
	// A new password invalidates the cached credential at once.
	if err := SetRcmdPassword(r, DefaultRcmdUser, "newer"); err != nil {
		t.Fatal(err)
	}
	if w, _ := serve(a, RoleAdmin, "rcmdadmin", "good"); w.Code != http.StatusUnauthorized {
		t.Errorf("old password after a change: %d", w.Code)
	}
	// Expired entries go.
	a.now = func() time.Time { return time.Now().Add(2 * CacheTTL) }
	if w, _ := serve(a, RoleAdmin, "rcmdadmin", "newer"); w.Code != http.StatusOK || len(a.cache) != 1 {
		t.Errorf("after expiry: %d, %d cache entries", w.Code, len(a.cache))
	}
}

func TestRequireRoles(t *testing.T) {
	r := roots(t)
	if err := SetRcmdPassword(r, DefaultRcmdUser, "rc"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"admin", "bob"} {
		if err := SetPassword(UserFile(r), u, u+"-pw"); err != nil {
			t.Fatal(err)
		}
	}
	var log logbook
	a := New(r, log.warnf)
	// Without group.conf every user is Admin.
	if w, _ := serve(a, RoleAdmin, "bob", "bob-pw"); w.Code != http.StatusOK {
		t.Errorf("bob without group.conf: %d", w.Code)
	}
	write(t, GroupFile(r), "Admin : admin\nMonitor : bob\n")
	for _, tc := range []struct {
		role, user string
		code       int
	}{
		{RoleAdmin, "bob", http.StatusForbidden},
		{RoleMonitor, "bob", http.StatusOK},
		{RoleAdmin, "admin", http.StatusOK},
		// The private user of distributed commands is not in group.conf
		// and is an Admin all the same.
		{RoleAdmin, "rcmdadmin", http.StatusOK},
	} {
		pwd := tc.user + "-pw"
		if tc.user == "rcmdadmin" {
			pwd = "rc"
		}
		if w, _ := serve(a, tc.role, tc.user, pwd); w.Code != tc.code {
			t.Errorf("%s on a %s route: %d %s, want %d", tc.user, tc.role, w.Code, w.Body, tc.code)
		}
	}
	if got := log.take(); !strings.Contains(got, `user bob has role "Monitor", Admin needed`) {
		t.Errorf("log: %q", got)
	}
}

func TestRequireUnsecure(t *testing.T) {
	r := roots(t)
	if err := SetUnsecure(r, true); err != nil {
		t.Fatal(err)
	}
	var log logbook
	a := New(r, log.warnf)
	w, seen := serve(a, RoleAdmin, "", "")
	if w.Code != http.StatusOK || seen == nil || !seen.Unsecure || seen.String() != "anonymous@10.0.0.9" {
		t.Fatalf("unsecure, no credentials: %d %+v", w.Code, seen)
	}
	if got := log.take(); !strings.Contains(got, "UNSECURE web service") || !strings.Contains(got, "from 10.0.0.9:40000") {
		t.Errorf("each unauthenticated request is logged loudly: %q", got)
	}
	if _, seen := serve(a, RoleAdmin, "rcmdadmin", "whatever"); seen == nil || seen.User != "rcmdadmin" {
		t.Errorf("unsecure keeps the name the client gives: %+v", seen)
	}
	// Back to secure: the same request is refused.
	if err := SetUnsecure(r, false); err != nil {
		t.Fatal(err)
	}
	if w, _ := serve(a, RoleAdmin, "", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("after -secure: %d", w.Code)
	}
}

func TestRequireBrokenHTTPConf(t *testing.T) {
	r := roots(t)
	write(t, HTTPDFile(r), "Define unsecure\nDefine usefile\n")
	var log logbook
	w, seen := serve(New(r, log.warnf), RoleAdmin, "", "")
	if w.Code != http.StatusInternalServerError || seen != nil {
		t.Errorf("a broken httpd.conf refuses every request: %d %+v", w.Code, seen)
	}
	if !strings.Contains(log.take(), "every request is refused until httpd.conf is fixed") {
		t.Error("the refusal is not logged")
	}
}
