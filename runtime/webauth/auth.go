package webauth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/safekit-oss/safekit/modules/layout"
)

const (
	// CacheTTL is how long a verified credential is trusted without running
	// bcrypt again (bcrypt takes tens of milliseconds by design, and
	// `safekit -H` sends one request per command).
	CacheTTL = 5 * time.Minute
	// maxConcurrentChecks bounds the bcrypt verifications running at once,
	// so that a flood of wrong passwords cannot take every CPU of the node.
	maxConcurrentChecks = 4
)

// Authenticator checks the callers of the web service against the files of
// SAFE/web/conf, read at each request so that `safekit webservercfg` takes
// effect at once.
type Authenticator struct {
	roots layout.Roots
	warnf func(format string, args ...any)
	// now is the clock of the cache.
	now func() time.Time
	sem chan struct{}

	mu    sync.Mutex
	cache map[[32]byte]time.Time // credential digest → end of its validity

	dummyOnce sync.Once
	dummy     string
}

// New returns the Authenticator of a node; warnf receives the refusals and
// the requests accepted without authentication (the daemon's log).
func New(r layout.Roots, warnf func(format string, args ...any)) *Authenticator {
	if warnf == nil {
		warnf = func(string, ...any) {}
	}
	return &Authenticator{roots: r, warnf: warnf, now: time.Now, sem: make(chan struct{}, maxConcurrentChecks), cache: map[[32]byte]time.Time{}}
}

// Caller is who sent a request.
type Caller struct {
	// User is the authenticated user; on an unsecure node, the user the
	// client named, or "anonymous".
	User string
	// Addr is the client's IP address.
	Addr string
	// Unsecure: the node does not authenticate.
	Unsecure bool
}

// String is how commands record the caller: "rcmdadmin@10.0.0.1".
func (c Caller) String() string { return c.User + "@" + c.Addr }

type callerKey struct{}

// CallerFrom returns the caller of a request that went through Require.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// Require admits the requests of users that have at least role, with HTTP
// basic authentication, and all requests on an unsecure node. A refusal is
// answered 401 (or 403 for a missing role) and logged with the remote
// address.
func (a *Authenticator) Require(role string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := r.RemoteAddr
		if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			ip = h
		}
		conf, err := ReadHTTPConf(a.roots)
		if err != nil {
			a.warnf("refused web request %s %s from %s: %v; every request is refused until httpd.conf is fixed", r.Method, r.URL.Path, r.RemoteAddr, err)
			writeError(w, http.StatusInternalServerError, "the web service configuration of this node has errors (see its safekitd log)")
			return
		}
		user, pwd, hasAuth := r.BasicAuth()
		if conf.Unsecure {
			if !hasAuth || user == "" {
				user = "anonymous"
			}
			a.warnf("UNSECURE web service (Define unsecure in %s): unauthenticated request %s %s from %s accepted as Admin; run safekit webservercfg -secure to require a password",
				HTTPDFile(a.roots), r.Method, r.URL.Path, r.RemoteAddr)
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, Caller{User: user, Addr: ip, Unsecure: true})))
			return
		}
		if !hasAuth {
			a.warnf("refused web request %s %s from %s: no credentials", r.Method, r.URL.Path, r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Basic realm="SafeKit", charset="UTF-8"`)
			writeError(w, http.StatusUnauthorized, "authentication required")
			return
		}
		if err := a.verify(user, pwd); err != nil {
			a.warnf("refused web request %s %s from %s: user %s: %v", r.Method, r.URL.Path, r.RemoteAddr, user, err)
			w.Header().Set("WWW-Authenticate", `Basic realm="SafeKit", charset="UTF-8"`)
			writeError(w, http.StatusUnauthorized, "authentication failed")
			return
		}
		have := a.roleOf(user)
		if rank[have] < rank[role] {
			a.warnf("refused web request %s %s from %s: user %s has role %q, %s needed", r.Method, r.URL.Path, r.RemoteAddr, user, have, role)
			writeError(w, http.StatusForbidden, fmt.Sprintf("user %s does not have the %s role", user, role))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, Caller{User: user, Addr: ip})))
	})
}

var rank = map[string]int{RoleAdmin: 3, RoleControl: 2, RoleMonitor: 1}

// verify checks a password against user.conf, trusting for CacheTTL a
// credential already verified. The cache key covers the stored hash, so a
// new password invalidates it.
func (a *Authenticator) verify(user, pwd string) error {
	users, err := ReadUsers(UserFile(a.roots))
	if err != nil {
		return err
	}
	hash, ok := users[user]
	if !ok {
		// The same work as a real check, so that the time of the answer
		// does not tell which users exist.
		_ = CheckPassword(a.dummyHash(), pwd)
		return fmt.Errorf("unknown user (not in %s)", UserFile(a.roots))
	}
	key := sha256.Sum256([]byte(user + "\x00" + pwd + "\x00" + hash))
	now := a.now()
	a.mu.Lock()
	until, hit := a.cache[key]
	a.mu.Unlock()
	if hit && now.Before(until) {
		return nil
	}
	a.sem <- struct{}{}
	err = CheckPassword(hash, pwd)
	<-a.sem
	if err != nil {
		return err
	}
	a.mu.Lock()
	for k, t := range a.cache {
		if !now.Before(t) {
			delete(a.cache, k)
		}
	}
	a.cache[key] = now.Add(CacheTTL)
	a.mu.Unlock()
	return nil
}

func (a *Authenticator) dummyHash() string {
	a.dummyOnce.Do(func() {
		pwd, _ := GeneratePassword()
		a.dummy, _ = HashPassword(pwd)
	})
	return a.dummy
}

// roleOf is the role of an authenticated user: the private user of
// distributed commands is an Admin; the others have their role of
// group.conf, or Admin when there is no group.conf.
func (a *Authenticator) roleOf(user string) string {
	if c, err := ReadRcmd(a.roots); err == nil && c.User == user {
		return RoleAdmin
	}
	g, ok, err := ReadGroups(GroupFile(a.roots))
	if err != nil {
		a.warnf("%v", err)
		return ""
	}
	if !ok {
		return RoleAdmin
	}
	return g.Role(user)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
