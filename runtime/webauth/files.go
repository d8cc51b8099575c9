package webauth

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/safekit-oss/safekit/internal/atomicfile"

	"golang.org/x/crypto/bcrypt"

	"github.com/safekit-oss/safekit/modules/layout"
)

// Defaults of the web service.
const (
	// DefaultHTTPPort is the port of the web service when httpd.conf does
	// not say ("Define httpport").
	DefaultHTTPPort = 9010
	// DefaultRcmdUser is the private user of distributed commands.
	DefaultRcmdUser = "rcmdadmin"
	// DefaultConsoleUser is the user `webservercfg -passwd` sets.
	DefaultConsoleUser = "admin"
)

// Roles of group.conf, from the most to the least powerful.
const (
	RoleAdmin   = "Admin"   // configuration, control and monitoring
	RoleControl = "Control" // control (start, stop...) and monitoring
	RoleMonitor = "Monitor" // monitoring only
)

// ConfDir is SAFE/web/conf.
func ConfDir(r layout.Roots) string { return filepath.Join(r.SAFE, "web", "conf") }

// UserFile is SAFE/web/conf/user.conf.
func UserFile(r layout.Roots) string { return filepath.Join(ConfDir(r), "user.conf") }

// GroupFile is SAFE/web/conf/group.conf.
func GroupFile(r layout.Roots) string { return filepath.Join(ConfDir(r), "group.conf") }

// HTTPDFile is SAFE/web/conf/httpd.conf.
func HTTPDFile(r layout.Roots) string { return filepath.Join(ConfDir(r), "httpd.conf") }

// RcmdFile is SAFE/private/conf/rcmd, the credential this node's CLI sends
// to the other nodes.
func RcmdFile(r layout.Roots) string { return filepath.Join(r.SAFE, "private", "conf", "rcmd") }

// HTTPConf is what httpd.conf says.
type HTTPConf struct {
	// HTTPPort is the TCP port of the web service ("Define httpport N").
	// Default 9010. safekitd listens on it when it starts, and `safekit -H`
	// dials it on the other nodes, so it is the same on every node.
	HTTPPort int
	// Unsecure: no authentication, every caller is Admin ("Define
	// unsecure"), for a lab cluster. Default false: file authentication
	// with user.conf ("Define usefile").
	Unsecure bool
}

// ReadHTTPConf reads httpd.conf; a missing file gives the defaults.
func ReadHTTPConf(r layout.Roots) (HTTPConf, error) {
	data, err := os.ReadFile(HTTPDFile(r))
	if errors.Is(err, os.ErrNotExist) {
		return HTTPConf{HTTPPort: DefaultHTTPPort}, nil
	}
	if err != nil {
		return HTTPConf{HTTPPort: DefaultHTTPPort}, err
	}
	return parseHTTPConf(data, HTTPDFile(r))
}

// HTTPPort is the port of the web service of this node, the default when
// httpd.conf cannot be read.
func HTTPPort(r layout.Roots) int {
	c, err := ReadHTTPConf(r)
	if err != nil || c.HTTPPort == 0 {
		return DefaultHTTPPort
	}
	return c.HTTPPort
}

// parseHTTPConf reads the "Define name [value]" lines; other Defines of
// SafeKit's httpd.conf (Loglevel, accesslog...) are accepted and ignored.
func parseHTTPConf(data []byte, file string) (HTTPConf, error) {
	c := HTTPConf{HTTPPort: DefaultHTTPPort}
	var errs []error
	authLine := map[string]int{}
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[0] != "Define" || len(f) < 2 || len(f) > 3 {
			errs = append(errs, fmt.Errorf("%s:%d: %q: this file holds only lines \"Define name [value]\" (e.g. Define httpport 9010)", file, n, strings.TrimSpace(line)))
			continue
		}
		switch f[1] {
		case "httpport":
			p := 0
			if len(f) == 3 {
				p, _ = strconv.Atoi(f[2])
			}
			if p < 1 || p > 65535 {
				errs = append(errs, fmt.Errorf("%s:%d: httpport needs a TCP port (1-65535), e.g. Define httpport 9010", file, n))
				continue
			}
			c.HTTPPort = p
		case "usefile", "unsecure":
			for other, at := range authLine {
				if other != f[1] {
					errs = append(errs, fmt.Errorf("%s:%d: Define %s and Define %s (line %d) are both set: keep one (safekit webservercfg -secure or -unsecure)", file, n, f[1], other, at))
				}
			}
			authLine[f[1]] = n
			c.Unsecure = f[1] == "unsecure"
		}
	}
	return c, errors.Join(errs...)
}

// SetUnsecure switches httpd.conf to no authentication (on) or to file
// authentication, keeping its other lines.
func SetUnsecure(r layout.Roots, on bool) error {
	want := "Define usefile"
	if on {
		want = "Define unsecure"
	}
	return editFile(HTTPDFile(r), 0o644, defaultHTTPD, func(lines []string) ([]string, error) {
		out := lines[:0:0]
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) >= 2 && f[0] == "Define" && (f[1] == "usefile" || f[1] == "unsecure") {
				continue
			}
			out = append(out, l)
		}
		return append(out, want), nil
	})
}

// defaultHTTPD is the httpd.conf written when a command changes a node
// that has none.
var defaultHTTPD = []string{
	"# Web service of this SafeKit node (safekitd): distributed commands, API, console.",
	"# A change of port takes effect when safekitd restarts; it is the same on every node.",
	fmt.Sprintf("Define httpport %d", DefaultHTTPPort),
}

// ReadUsers reads user.conf (user → hash). A missing file has no user.
func ReadUsers(path string) (map[string]string, error) {
	users := map[string]string{}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return users, nil
	}
	if err != nil {
		return nil, err
	}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" || hash == "" {
			return nil, fmt.Errorf("%s:%d: expected user:hash (set a password with safekit webservercfg -passwd pwd -user name)", path, i+1)
		}
		users[user] = hash
	}
	return users, nil
}

// SetPassword sets the password of user in the htpasswd file path (a bcrypt
// hash), adding the user when it is not there.
func SetPassword(path, user, password string) error {
	if err := checkUser(user); err != nil {
		return err
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	return editFile(path, 0o600, nil, func(lines []string) ([]string, error) {
		out := lines[:0:0]
		done := false
		for _, l := range lines {
			if u, _, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && u == user {
				if !done {
					out = append(out, user+":"+hash)
					done = true
				}
				continue
			}
			out = append(out, l)
		}
		if !done {
			out = append(out, user+":"+hash)
		}
		return out, nil
	})
}

// RemoveUser removes user from the htpasswd file path.
func RemoveUser(path, user string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return editFile(path, 0o600, nil, func(lines []string) ([]string, error) {
		out := lines[:0:0]
		for _, l := range lines {
			if u, _, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && u == user {
				continue
			}
			out = append(out, l)
		}
		return out, nil
	})
}

// HashPassword returns the bcrypt hash of password in Apache's "$2y$" form.
func HashPassword(password string) (string, error) {
	if err := checkPassword(password); err != nil {
		return "", err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", err
	}
	// $2a$ and $2y$ are the same algorithm; Apache's htpasswd writes $2y$.
	return "$2y$" + strings.TrimPrefix(string(h), "$2a$"), nil
}

// Errors of CheckPassword.
var (
	ErrWrongPassword   = errors.New("wrong password")
	ErrUnsupportedHash = errors.New("the hash is not bcrypt ($2y$, $2a$, $2b$): set the password again with safekit webservercfg")
)

// CheckPassword compares password with a hash of user.conf.
func CheckPassword(hash, password string) error {
	if !strings.HasPrefix(hash, "$2y$") && !strings.HasPrefix(hash, "$2a$") && !strings.HasPrefix(hash, "$2b$") {
		return ErrUnsupportedHash
	}
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)); err != nil {
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return ErrWrongPassword
		}
		return fmt.Errorf("%w (%v)", ErrUnsupportedHash, err)
	}
	return nil
}

func checkUser(user string) error {
	if user == "" || strings.ContainsAny(user, ": \t\r\n") {
		return fmt.Errorf("invalid user name %q: use letters, digits and punctuation other than ':'", user)
	}
	return nil
}

func checkPassword(password string) error {
	switch {
	case password == "":
		return errors.New("empty password: give one")
	case strings.ContainsAny(password, "\r\n"):
		return errors.New("a password cannot contain a line break")
	case len(password) > 72:
		return fmt.Errorf("password of %d bytes: bcrypt uses at most 72", len(password))
	}
	return nil
}

// Groups is group.conf: role → users.
type Groups map[string][]string

// ReadGroups reads group.conf; ok is false when there is none (every user
// is then Admin).
func ReadGroups(path string) (g Groups, ok bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Groups{}, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	g = Groups{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		role, members, found := strings.Cut(line, ":")
		if !found {
			return nil, true, fmt.Errorf("%s:%d: expected \"Role : user1 user2\" (roles Admin, Control, Monitor)", path, i+1)
		}
		role = strings.TrimSpace(role)
		g[role] = append(g[role], strings.Fields(members)...)
	}
	return g, true, nil
}

// Role returns the most powerful role of user, "" when it has none.
func (g Groups) Role(user string) string {
	for _, role := range []string{RoleAdmin, RoleControl, RoleMonitor} {
		for _, u := range g[role] {
			if u == user {
				return role
			}
		}
	}
	return ""
}

// SetRole makes user a member of role only, in the group file path.
func SetRole(path, user, role string) error {
	return editFile(path, 0o644, nil, func(lines []string) ([]string, error) {
		out := lines[:0:0]
		placed := false
		for _, l := range lines {
			name, members, found := strings.Cut(strings.TrimSpace(l), ":")
			if !found || strings.HasPrefix(strings.TrimSpace(l), "#") {
				out = append(out, l)
				continue
			}
			name = strings.TrimSpace(name)
			var kept []string
			for _, m := range strings.Fields(members) {
				if m != user {
					kept = append(kept, m)
				}
			}
			if name == role && !placed {
				kept = append(kept, user)
				placed = true
			}
			out = append(out, strings.TrimSpace(name+" : "+strings.Join(kept, " ")))
		}
		if !placed {
			out = append(out, role+" : "+user)
		}
		return out, nil
	})
}

// Credential is a user and its password.
type Credential struct {
	User, Password string
}

// ReadRcmd reads SAFE/private/conf/rcmd; the error wraps os.ErrNotExist
// when there is none.
func ReadRcmd(r layout.Roots) (Credential, error) {
	data, err := os.ReadFile(RcmdFile(r))
	if err != nil {
		return Credential{}, err
	}
	user, pwd, ok := strings.Cut(strings.TrimRight(string(data), "\r\n"), ":")
	if !ok || user == "" || pwd == "" {
		return Credential{}, fmt.Errorf("%s: expected user:password; set it again with safekit webservercfg -rcmdpasswd pwd", RcmdFile(r))
	}
	return Credential{User: user, Password: pwd}, nil
}

// SetRcmdPassword sets the private user of distributed commands on this
// node: its hash in user.conf (what the other nodes are checked against) and
// its credential in SAFE/private/conf/rcmd (what this node sends). A
// previous user of another name is removed from user.conf.
func SetRcmdPassword(r layout.Roots, user, password string) error {
	if err := checkUser(user); err != nil {
		return err
	}
	if err := checkPassword(password); err != nil {
		return err
	}
	if old, err := ReadRcmd(r); err == nil && old.User != user {
		if err := RemoveUser(UserFile(r), old.User); err != nil {
			return err
		}
	}
	if err := SetPassword(UserFile(r), user, password); err != nil {
		return err
	}
	return atomicfile.WriteFile(RcmdFile(r), []byte(user+":"+password+"\n"), 0o600)
}

// SetConsolePassword sets the password of a console user. When group.conf
// exists the user is made an Admin there; without it every user is.
func SetConsolePassword(r layout.Roots, user, password string) error {
	if err := SetPassword(UserFile(r), user, password); err != nil {
		return err
	}
	if _, ok, err := ReadGroups(GroupFile(r)); err != nil || !ok {
		return err
	}
	return SetRole(GroupFile(r), user, RoleAdmin)
}

// EnsureRcmd gives this node a random password for the private user of
// distributed commands when it has none yet, and returns it (created is
// then true) so that the operator copies it to the other nodes.
func EnsureRcmd(r layout.Roots) (password string, created bool, err error) {
	if _, err := ReadRcmd(r); !errors.Is(err, os.ErrNotExist) {
		return "", false, err
	}
	users, err := ReadUsers(UserFile(r))
	if err != nil {
		return "", false, err
	}
	if _, ok := users[DefaultRcmdUser]; ok {
		return "", false, fmt.Errorf("%s is missing while %s has user %s: this node cannot authenticate its distributed commands; set the password of the other nodes with safekit webservercfg -rcmdpasswd pwd",
			RcmdFile(r), UserFile(r), DefaultRcmdUser)
	}
	password, err = GeneratePassword()
	if err != nil {
		return "", false, err
	}
	if err := SetRcmdPassword(r, DefaultRcmdUser, password); err != nil {
		return "", false, err
	}
	return password, true, nil
}

// GeneratePassword returns 24 random characters (144 bits).
func GeneratePassword() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// editFile rewrites the lines of path through edit; a missing file starts
// from initial.
func editFile(path string, mode os.FileMode, initial []string, edit func([]string) ([]string, error)) error {
	var lines []string
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		lines = strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(data) == 0 {
			lines = nil
		}
	case errors.Is(err, os.ErrNotExist):
		lines = append([]string(nil), initial...)
	default:
		return err
	}
	lines, err = edit(lines)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	return atomicfile.WriteFile(path, b.Bytes(), mode)
}
