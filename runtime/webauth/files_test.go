package webauth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safekit-oss/safekit/modules/layout"
)

func roots(t *testing.T) layout.Roots {
	t.Helper()
	dir := t.TempDir()
	return layout.Roots{SAFE: filepath.Join(dir, "safe"), SAFEVAR: filepath.Join(dir, "var")}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestHTPasswd(t *testing.T) {
	r := roots(t)
	path := UserFile(r)
	// A line of Apache's htpasswd -bB (cost 5) and one it cannot check.
	write(t, path, "# users of the console\nadmin:$2y$05$oPquL6Z2Y78QcXpHIako.O58Z6lWfa5A86XD.eCbEnbRcguJln9Ce\nmanager:$apr1$U2GLivF5$x39WKmSpq6BGmLybESgNV1\n")
	if err := SetPassword(path, "operator", "op-secret"); err != nil {
		t.Fatal(err)
	}
	if err := SetPassword(path, "admin", "new-secret"); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 4 || lines[0] != "# users of the console" || !strings.HasPrefix(lines[1], "admin:$2y$10$") ||
		!strings.HasPrefix(lines[2], "manager:$apr1$") || !strings.HasPrefix(lines[3], "operator:$2y$") {
		t.Fatalf("user.conf after two changes (comments, order and other users kept):\n%s", data)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("user.conf mode %v, want 0600", st.Mode().Perm())
	}
	users, err := ReadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPassword(users["admin"], "new-secret"); err != nil {
		t.Errorf("new password of admin: %v", err)
	}
	if err := CheckPassword(users["admin"], "admin"); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("old password of admin: %v, want ErrWrongPassword", err)
	}
	if err := CheckPassword(users["manager"], "x"); !errors.Is(err, ErrUnsupportedHash) {
		t.Errorf("$apr1$ hash: %v, want ErrUnsupportedHash", err)
	}
	if err := RemoveUser(path, "operator"); err != nil {
		t.Fatal(err)
	}
	if users, _ := ReadUsers(path); users["operator"] != "" || users["admin"] == "" {
		t.Errorf("after RemoveUser(operator): %v", users)
	}
}

func TestHTPasswdErrors(t *testing.T) {
	r := roots(t)
	for _, tc := range []struct{ user, pwd, want string }{
		{"", "x", "invalid user name"},
		{"a:b", "x", "invalid user name"},
		{"admin", "", "empty password"},
		{"admin", "a\nb", "line break"},
		{"admin", strings.Repeat("x", 73), "at most 72"},
	} {
		if err := SetPassword(UserFile(r), tc.user, tc.pwd); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SetPassword(%q, %q): %v, want %q", tc.user, tc.pwd, err, tc.want)
		}
	}
	write(t, UserFile(r), "admin:$2y$x\nbroken line\n")
	if _, err := ReadUsers(UserFile(r)); err == nil || !strings.Contains(err.Error(), "user.conf:2: expected user:hash") {
		t.Errorf("ReadUsers of a broken file: %v", err)
	}
}

func TestGroups(t *testing.T) {
	r := roots(t)
	path := GroupFile(r)
	if _, ok, err := ReadGroups(path); ok || err != nil {
		t.Fatalf("no group.conf: ok=%v err=%v", ok, err)
	}
	write(t, path, "Admin : admin\nControl : manager\nMonitor : operator1 operator2\n")
	if err := SetRole(path, "operator1", RoleAdmin); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if want := "Admin : admin operator1\nControl : manager\nMonitor : operator2\n"; string(data) != want {
		t.Errorf("group.conf:\n%s\nwant:\n%s", data, want)
	}
	g, ok, err := ReadGroups(path)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	for user, want := range map[string]string{"admin": RoleAdmin, "operator1": RoleAdmin, "manager": RoleControl, "operator2": RoleMonitor, "nobody": ""} {
		if got := g.Role(user); got != want {
			t.Errorf("role of %s: %q, want %q", user, got, want)
		}
	}
}

func TestHTTPConf(t *testing.T) {
	r := roots(t)
	if c, err := ReadHTTPConf(r); err != nil || c != (HTTPConf{HTTPPort: 9010}) {
		t.Fatalf("no httpd.conf: %+v %v", c, err)
	}
	write(t, HTTPDFile(r), "# SafeKit\nDefine httpport 9500\nDefine usefile\nDefine Loglevel warn\n")
	if err := SetUnsecure(r, true); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(HTTPDFile(r))
	if want := "# SafeKit\nDefine httpport 9500\nDefine Loglevel warn\nDefine unsecure\n"; string(data) != want {
		t.Errorf("httpd.conf after -unsecure:\n%s\nwant:\n%s", data, want)
	}
	if c, err := ReadHTTPConf(r); err != nil || c != (HTTPConf{HTTPPort: 9500, Unsecure: true}) {
		t.Errorf("after -unsecure: %+v %v", c, err)
	}
	if err := SetUnsecure(r, false); err != nil {
		t.Fatal(err)
	}
	if c, err := ReadHTTPConf(r); err != nil || c.Unsecure {
		t.Errorf("after -secure: %+v %v", c, err)
	}
	write(t, HTTPDFile(r), "Define httpport 90x\nListen 80\nDefine usefile\nDefine unsecure\n")
	_, err := ReadHTTPConf(r)
	for _, want := range []string{"httpd.conf:1: httpport needs a TCP port", `httpd.conf:2: "Listen 80"`, "httpd.conf:4: Define unsecure and Define usefile (line 3)"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("broken httpd.conf: %v, want %q", err, want)
		}
	}
	if p := HTTPPort(r); p != DefaultHTTPPort {
		t.Errorf("HTTPPort of a broken httpd.conf: %d", p)
	}
}

func TestRcmd(t *testing.T) {
	r := roots(t)
	pwd, created, err := EnsureRcmd(r)
	if err != nil || !created || len(pwd) != 24 {
		t.Fatalf("first EnsureRcmd: %q %v %v", pwd, created, err)
	}
	c, err := ReadRcmd(r)
	if err != nil || c != (Credential{DefaultRcmdUser, pwd}) {
		t.Fatalf("rcmd: %+v %v", c, err)
	}
	if st, _ := os.Stat(RcmdFile(r)); st.Mode().Perm() != 0o600 {
		t.Errorf("rcmd mode %v, want 0600", st.Mode().Perm())
	}
	users, _ := ReadUsers(UserFile(r))
	if err := CheckPassword(users[DefaultRcmdUser], pwd); err != nil {
		t.Errorf("user.conf does not hold the generated password: %v", err)
	}
	if again, created, err := EnsureRcmd(r); again != "" || created || err != nil {
		t.Errorf("second EnsureRcmd changed the password: %q %v %v", again, created, err)
	}
	// Renaming the private user removes the old one from user.conf.
	if err := SetRcmdPassword(r, "remote", "s3cret"); err != nil {
		t.Fatal(err)
	}
	users, _ = ReadUsers(UserFile(r))
	if _, old := users[DefaultRcmdUser]; old || users["remote"] == "" {
		t.Errorf("users after renaming the private user: %v", users)
	}
	if err := os.Remove(RcmdFile(r)); err != nil {
		t.Fatal(err)
	}
	if err := SetRcmdPassword(r, DefaultRcmdUser, "x"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(RcmdFile(r)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := EnsureRcmd(r); err == nil || !strings.Contains(err.Error(), "cannot authenticate its distributed commands") {
		t.Errorf("EnsureRcmd with a hash and no credential: %v", err)
	}
}

func TestConsolePasswordRole(t *testing.T) {
	r := roots(t)
	if err := SetConsolePassword(r, "admin", "pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(GroupFile(r)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("group.conf created (every user is Admin without it): %v", err)
	}
	write(t, GroupFile(r), "Monitor : admin bob\n")
	if err := SetConsolePassword(r, "admin", "pw"); err != nil {
		t.Fatal(err)
	}
	if g, _, _ := ReadGroups(GroupFile(r)); g.Role("admin") != RoleAdmin || g.Role("bob") != RoleMonitor {
		t.Errorf("group.conf after -passwd: %v", g)
	}
}
