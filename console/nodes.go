package console

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/safekit-oss/safekit/modules"
	"github.com/safekit-oss/safekit/modules/clusterconf"
	"github.com/safekit-oss/safekit/runtime/webauth"
)

// nodeDialTimeout bounds the connection to another node's web service.
const nodeDialTimeout = 5 * time.Second

// nodeRef is a node of cluster.xml.
type nodeRef struct {
	Name string `json:"name"`
	// URL is the base URL of its web service: its address on the lan of
	// distributed commands (command="on", else the first lan) and the HTTP
	// port of this node, as `safekit -H` reaches it.
	URL string `json:"url"`
	// Addresses are its addresses by lan.
	Addresses map[string]string `json:"addresses"`
}

// clusterNodes lists the nodes of cluster.xml; none without cluster.xml.
func (s *Server) clusterNodes() ([]nodeRef, error) {
	cl, _, err := modules.LoadCluster(s.roots())
	if err != nil || cl == nil {
		return nil, err
	}
	port := webauth.HTTPPort(s.roots())
	var out []nodeRef
	for _, name := range cl.NodeNames() {
		n := nodeRef{Name: name, Addresses: map[string]string{}}
		for _, l := range cl.Lans {
			if a := cl.Addr(l.Name, name); a != "" {
				n.Addresses[l.Name] = a
			}
		}
		n.URL = clusterconf.BaseURL("http", clusterconf.CommandAddr(cl, name), port)
		out = append(out, n)
	}
	return out, nil
}

// node finds a node of cluster.xml by name.
func (s *Server) node(name string) (nodeRef, error) {
	nodes, err := s.clusterNodes()
	if err != nil {
		return nodeRef{}, err
	}
	var names []string
	for _, n := range nodes {
		if n.Name == name {
			return n, nil
		}
		names = append(names, n.Name)
	}
	if len(nodes) == 0 {
		return nodeRef{}, fmt.Errorf("node %s: this node has no cluster configuration (SAFEVAR/cluster/cluster.xml)", name)
	}
	return nodeRef{}, fmt.Errorf("%s is not a node of cluster.xml (nodes: %s)", name, strings.Join(names, ", "))
}

// NodeResult is the outcome of an operation on one node.
type NodeResult struct {
	Node   string `json:"node"`
	OK     bool   `json:"ok"`
	Output string `json:"output"`
}

// forNodes runs f on each of names at once and returns the results in the
// same order.
func forNodes[T any](names []T, f func(T) NodeResult) []NodeResult {
	out := make([]NodeResult, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() { defer wg.Done(); out[i] = f(n) }()
	}
	wg.Wait()
	return out
}

// onOthers runs f on every node of the cluster but this one.
func (s *Server) onOthers(r *http.Request, f func(nodeRef) NodeResult) ([]NodeResult, error) {
	nodes, err := s.clusterNodes()
	if err != nil {
		return nil, err
	}
	self := s.selfName(r.Context())
	var others []nodeRef
	for _, n := range nodes {
		if n.Name != self {
			others = append(others, n)
		}
	}
	return forNodes(others, f), nil
}

// nodeClient calls the web services of the other nodes as the private user
// of distributed commands.
type nodeClient struct {
	s    *Server
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	http *http.Client
}

func newNodeClient(s *Server) *nodeClient {
	dial := (&net.Dialer{Timeout: nodeDialTimeout}).DialContext
	return &nodeClient{s: s, dial: dial, http: &http.Client{Transport: &http.Transport{
		DialContext:         dial,
		TLSHandshakeTimeout: nodeDialTimeout,
		MaxIdleConnsPerHost: 4,
	}}}
}

// credential is what this node sends to the others: nil on an unsecure
// node, which sends none.
func (c *nodeClient) credential() (*webauth.Credential, error) {
	conf, err := readWebConf(c.s.roots())
	if err == nil && conf.Unsecure {
		return nil, nil
	}
	cred, err := webauth.ReadRcmd(c.s.roots())
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no credential for distributed commands on this node (%s): set the password of the other nodes with safekit webservercfg -rcmdpasswd pwd", webauth.RcmdFile(c.s.roots()))
	}
	if err != nil {
		return nil, err
	}
	return &cred, nil
}

// authorize adds the credential of this node to a request to another one.
func (c *nodeClient) authorize(h http.Header) error {
	cred, err := c.credential()
	if err != nil {
		return err
	}
	if cred != nil {
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(cred.User+":"+cred.Password)))
	}
	return nil
}

// do sends a request to another node and decodes its JSON answer into out
// (when not nil).
func (c *nodeClient) do(ctx context.Context, method, url, contentType string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if err := c.authorize(req.Header); err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("no reply of %s: %v", req.URL.Host, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJSONBody))
	if err != nil {
		return fmt.Errorf("%s: %w", req.URL.Host, err)
	}
	if resp.StatusCode/100 != 2 {
		var eb errorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
			eb.Error = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(data)))
		}
		return &statusError{code: resp.StatusCode, msg: fmt.Sprintf("%s: %s", req.URL.Host, eb.Error)}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// statusError is a non-2xx answer of another node.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// selfName is the name of this node in cluster.xml, "" when unknown.
func (s *Server) selfName(ctx context.Context) string {
	var n Node
	if err := s.localGet(ctx, "/v1/node", &n); err != nil {
		return ""
	}
	return n.Name
}

// localGet reads a JSON answer of the daemon's local API.
func (s *Server) localGet(ctx context.Context, path string, out any) error {
	resp, err := s.local(ctx, http.MethodGet, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

// local sends a request to the daemon's local API; a non-2xx answer is
// returned as a *statusError with its message.
func (s *Server) local(ctx context.Context, method, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://local"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.b.Local().Do(req)
	if err != nil {
		return nil, fmt.Errorf("safekitd does not answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxJSONBody))
		var eb errorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
			eb.Error = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(data)))
		}
		return nil, &statusError{code: resp.StatusCode, msg: eb.Error}
	}
	return resp, nil
}

// probeTimeout bounds the probe of an address by the cluster wizard: an
// operator waits for it while typing.
const probeTimeout = 2 * time.Second

// Probe is the body of POST /api/v1.0/cluster/probe.
type Probe struct {
	// Addr is an address that may go in cluster.xml: IPv4, IPv6 (with or
	// without brackets) or a host name.
	Addr string `json:"addr"`
}

// ProbeResult says whether a safekitd answers at an address.
type ProbeResult struct {
	Addr string `json:"addr"`
	// URL is where it was asked: the address at the HTTP port of this
	// node, as the nodes of a cluster reach each other.
	URL string `json:"url"`
	// OK: a safekitd answered with what Level says of it; its Node is its
	// name in its own cluster.xml, "" before it has one.
	OK bool `json:"ok"`
	Level
	// Error says why not.
	Error string `json:"error,omitempty"`
}

// handleClusterProbe asks an address that is not in cluster.xml yet which
// safekitd answers there, as the private user of distributed commands. It
// sends that credential to an address an Admin chose, as applying a
// cluster.xml with that address would.
func (s *Server) handleClusterProbe(w http.ResponseWriter, r *http.Request) {
	var p Probe
	if !decodeJSON(w, r, &p) {
		return
	}
	addr := strings.TrimSpace(p.Addr)
	if !probeable(addr) {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("%q is not an address: give an IPv4 or IPv6 address or a host name", p.Addr))
		return
	}
	out := ProbeResult{Addr: addr, URL: clusterconf.BaseURL("http", addr, webauth.HTTPPort(s.roots()))}
	ctx, cancel := context.WithTimeout(r.Context(), probeTimeout)
	defer cancel()
	err := s.nodes.do(ctx, http.MethodGet, out.URL+"/api/v1.0/level", "", nil, &out.Level)
	var se *statusError
	var syntax *json.SyntaxError
	switch {
	case errors.As(err, &se) && se.code == http.StatusUnauthorized:
		out.Error = fmt.Sprintf("%s answers, but refuses the password of distributed commands of this node: give every node the same (safekit webservercfg -rcmdpasswd)", out.URL)
	case errors.As(err, &syntax), errors.As(err, &se) && se.code == http.StatusNotFound, err == nil && out.Version == "":
		out.Error = fmt.Sprintf("%s answers, but it is not the web service of a safekitd", out.URL)
	case ctx.Err() != nil && r.Context().Err() == nil:
		out.Error = fmt.Sprintf("no reply of %s within %s: check the address, the network, the firewall and that safekitd runs there", addr, probeTimeout)
	case err != nil:
		out.Error = err.Error()
	default:
		out.OK = true
	}
	writeJSON(w, http.StatusOK, out)
}

// probeable accepts what can be the address of a node: an IP address, or
// a host name (no scheme, port, path or user).
func probeable(addr string) bool {
	if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")); ip != nil {
		return true
	}
	return addr != "" && len(addr) <= 253 && !strings.ContainsAny(addr, "/\\:@?#[] \t%")
}
