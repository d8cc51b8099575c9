package console

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/safekit-oss/safekit/internal/atomicfile"
	"github.com/safekit-oss/safekit/runtime/webauth"
)

// API keys (SafeKit 8.2.6, User's Guide §10.9.5.2) are bearer tokens with a
// role. Only the sha256 of a token is kept, in SAFE/web/conf/apikeys (mode
// 0600), one key a line:
//
//	name:role:sha256-hex:created-RFC3339
//
// The token itself is shown once, when the key is made. Pushing a key copies
// its hash to the other nodes, where the same token then works.

// Key is an API key as listed.
type Key struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Created time.Time `json:"created"`
	// Hash is the sha256 of the token, in hex: only in pushes.
	Hash string `json:"hash,omitempty"`
}

// NewKey is the answer of the creation of a key.
type NewKey struct {
	Key
	// Token is the bearer token, shown only this once.
	Token string `json:"token"`
}

// tokenPrefix starts every token, so that a leaked one is recognised.
const tokenPrefix = "skapi_"

var keyNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// keysMu serialises the changes of the keys file.
var keysMu sync.Mutex

func (s *Server) keysFile() string { return filepath.Join(webauth.ConfDir(s.roots()), "apikeys") }

func hashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// readKeys reads the keys file; a missing file has no key.
func (s *Server) readKeys() ([]Key, error) {
	data, err := os.ReadFile(s.keysFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var keys []Key
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.SplitN(line, ":", 4)
		if len(f) != 4 || rank[f[1]] == 0 || len(f[2]) != 64 {
			return nil, fmt.Errorf("%s:%d: expected name:role:sha256:date (delete the line, or the file, and make the key again)", s.keysFile(), i+1)
		}
		created, _ := time.Parse(time.RFC3339, f[3])
		keys = append(keys, Key{Name: f[0], Role: f[1], Hash: f[2], Created: created})
	}
	return keys, nil
}

// writeKeys replaces the keys file.
func (s *Server) writeKeys(keys []Key) error {
	sort.Slice(keys, func(i, j int) bool { return keys[i].Name < keys[j].Name })
	var b bytes.Buffer
	b.WriteString("# API keys of the console (name:role:sha256 of the token:date); see docs/console.md\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s:%s:%s:%s\n", k.Name, k.Role, k.Hash, k.Created.UTC().Format(time.RFC3339))
	}
	return atomicfile.WriteFile(s.keysFile(), b.Bytes(), 0o600)
}

// lookupKey finds the key of a token.
func (s *Server) lookupKey(token string) (Key, error) {
	keys, err := s.readKeys()
	if err != nil {
		return Key{}, err
	}
	h := hashToken(token)
	for _, k := range keys {
		if k.Hash == h {
			return k, nil
		}
	}
	return Key{}, errors.New("no key has this token")
}

// putKey adds or replaces a key.
func (s *Server) putKey(k Key) error {
	keysMu.Lock()
	defer keysMu.Unlock()
	keys, err := s.readKeys()
	if err != nil {
		return err
	}
	out := []Key{k}
	for _, o := range keys {
		if o.Name != k.Name {
			out = append(out, o)
		}
	}
	return s.writeKeys(out)
}

func (s *Server) handleKeyCreate(w http.ResponseWriter, r *http.Request) {
	v := mux.Vars(r)
	name, role := v["name"], v["role"]
	if !keyNameRE.MatchString(name) {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("invalid key name %q: use letters, digits, '.', '_' and '-' (at most 64)", name))
		return
	}
	secret, err := randomToken()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	token := tokenPrefix + secret
	k := Key{Name: name, Role: role, Hash: hashToken(token), Created: s.now()}
	if err := s.putKey(k); err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	c, _ := CallerFrom(r.Context())
	s.log.Infof("API key %s (role %s) made by %s", name, role, c)
	k.Hash = ""
	writeJSON(w, http.StatusOK, NewKey{Key: k, Token: token})
}

func (s *Server) handleKeyList(w http.ResponseWriter, r *http.Request) {
	keys, err := s.readKeys()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	out := []Key{}
	for _, k := range keys {
		k.Hash = ""
		out = append(out, k)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleKeyInstall(w http.ResponseWriter, r *http.Request) {
	name := mux.Vars(r)["name"]
	var k Key
	if !decodeJSON(w, r, &k) {
		return
	}
	if _, err := hex.DecodeString(k.Hash); err != nil || len(k.Hash) != 64 || rank[k.Role] == 0 || !keyNameRE.MatchString(name) {
		writeErr(w, http.StatusBadRequest, errors.New("a key needs a valid name, a role (Admin, Control, Monitor) and the sha256 of its token in hex"))
		return
	}
	k.Name = name
	if k.Created.IsZero() {
		k.Created = s.now()
	}
	if err := s.putKey(k); err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	c, _ := CallerFrom(r.Context())
	s.log.Infof("API key %s (role %s) installed by %s", name, k.Role, c)
	writeJSON(w, http.StatusOK, done{OK: true})
}

func (s *Server) handleKeyDelete(w http.ResponseWriter, r *http.Request) {
	name := mux.Vars(r)["name"]
	keysMu.Lock()
	defer keysMu.Unlock()
	keys, err := s.readKeys()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	var out []Key
	for _, k := range keys {
		if k.Name != name {
			out = append(out, k)
		}
	}
	if len(out) == len(keys) {
		writeErr(w, http.StatusNotFound, fmt.Errorf("no API key %s on this node", name))
		return
	}
	if err := s.writeKeys(out); err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	c, _ := CallerFrom(r.Context())
	s.log.Infof("API key %s deleted by %s", name, c)
	writeJSON(w, http.StatusOK, done{OK: true})
}

// handleKeyPush copies a key to every other node of the cluster.
func (s *Server) handleKeyPush(w http.ResponseWriter, r *http.Request) {
	name := mux.Vars(r)["name"]
	keys, err := s.readKeys()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	var key *Key
	for i := range keys {
		if keys[i].Name == name {
			key = &keys[i]
		}
	}
	if key == nil {
		writeErr(w, http.StatusNotFound, fmt.Errorf("no API key %s on this node", name))
		return
	}
	body, err := json.Marshal(key)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	results, err := s.onOthers(r, func(n nodeRef) NodeResult {
		res := NodeResult{Node: n.Name}
		if err := s.nodes.do(r.Context(), http.MethodPut, n.URL+"/api/v1.0/apikey/"+name, "application/json", body, nil); err != nil {
			res.Output = err.Error()
			return res
		}
		res.OK, res.Output = true, fmt.Sprintf("API key %s installed on %s\n", name, n.Name)
		return res
	})
	if err != nil {
		writeErr(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, http.StatusOK, results)
}
