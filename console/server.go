package console

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/sirupsen/logrus"

	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/webauth"
)

// Backend is what the console needs from the daemon of its node.
type Backend interface {
	// Roots are the SAFE and SAFEVAR of the node.
	Roots() layout.Roots
	// Local is a client of the daemon's local API (http://local/v1/...,
	// the API of the safekit command): node, level, module state, log,
	// log stream, events.
	Local() *http.Client
	// Run runs the safekit command args (after "safekit") for a caller
	// ("admin@10.0.0.5"), recorded in the command log, and returns its
	// output and exit code.
	Run(args []string, by string) Result
}

// Result is the output and exit code of a safekit command.
type Result struct {
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Code   int    `json:"code"`
}

// Remote holds the daemon's handlers of the distributed commands of
// `safekit -H`: any command (POST /api/v1.0/cli), the cluster
// configuration of -G (PUT /api/v1.0/cluster with a zip) and the module of
// -E (PUT /api/v1.0/modules/AM). The console authenticates their callers
// (Admin) and gives the caller with CallerFrom.
type Remote struct {
	CLI, Cluster, Module http.Handler
}

// Config of a Server.
type Config struct {
	Backend Backend
	Remote  Remote
	// UI serves GET /console/... (the embedded pages of package
	// console/ui); nil serves a page saying that this build has no UI.
	UI  http.Handler
	Log *logrus.Logger
	// Now is the clock of sessions, API keys and the login limit; nil:
	// time.Now.
	Now func() time.Time
}

// Server is the web service of a node.
type Server struct {
	b        Backend
	remote   Remote
	ui       http.Handler
	log      *logrus.Logger
	now      func() time.Time
	auth     *webauth.Authenticator
	sessions *sessions
	limiter  *limiter
	// anonToken is the CSRF token of the callers of an unsecure node,
	// which have no session.
	anonToken string
	// httpsPort is the port of the HTTPS listener once ListenTLS opened
	// it, 0 before: the HTTP port then sends browsers there.
	httpsPort atomic.Int32
	nodes     *nodeClient
	// localHub follows the modules of this node, clusterHub those of
	// every node; each runs while someone listens.
	localHub   *hub
	clusterHub *hub
	router     *mux.Router
	handler    http.Handler
}

// New builds the web service of a node.
func New(c Config) (*Server, error) {
	if c.Backend == nil {
		return nil, errors.New("console: no backend")
	}
	if c.Log == nil {
		c.Log = logrus.New()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	token, err := randomToken()
	if err != nil {
		return nil, err
	}
	s := &Server{b: c.Backend, remote: c.Remote, ui: c.UI, log: c.Log, now: c.Now,
		auth:      webauth.New(c.Backend.Roots(), c.Log.Warnf),
		sessions:  newSessions(c.Now),
		limiter:   newLimiter(c.Now),
		anonToken: token,
	}
	s.nodes = newNodeClient(s)
	s.localHub = newHub(s.watchLocal)
	s.clusterHub = newHub(s.watchCluster)
	s.router = s.routes()
	s.handler = s.secureHeaders(s.toHTTPS(s.router))
	return s, nil
}

// Handler is the whole web service: console, API, probes.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) roots() layout.Roots { return s.b.Roots() }

// Roles, in order of power.
const (
	roleOpen    = ""                  // no authentication
	RoleMonitor = webauth.RoleMonitor // read
	RoleControl = webauth.RoleControl // read and act on modules
	RoleAdmin   = webauth.RoleAdmin   // everything, configuration included
)

var rank = map[string]int{RoleMonitor: 1, RoleControl: 2, RoleAdmin: 3}

// route is one entry of the web service: the router and the OpenAPI
// document are both made from the table of routes.
type route struct {
	method string
	// path is a gorilla/mux template; a trailing "/" with prefix set
	// matches everything under it.
	path   string
	prefix bool
	role   string
	// tag groups the operation in the OpenAPI document; summary describes
	// it.
	tag, summary string
	// query lists the query parameters: "name: description".
	query []string
	// in and out name the schemas of the request and answer bodies (see
	// openapi.go), or give a media type ("text/plain").
	in, out string
	h       http.HandlerFunc
}

// routes builds the router from the table.
func (s *Server) routes() *mux.Router {
	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, fmt.Errorf("no such page or API: %s %s (the API is described at /api/v1.0/openapi.json)", r.Method, r.URL.Path))
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusMethodNotAllowed, fmt.Errorf("%s is not allowed on %s (see /api/v1.0/openapi.json)", r.Method, r.URL.Path))
	})
	for _, rt := range s.table() {
		var h http.Handler = rt.h
		if rt.role != roleOpen {
			h = s.require(rt.role, h)
		}
		var m *mux.Route
		if rt.prefix {
			m = r.PathPrefix(rt.path)
		} else {
			m = r.Path(rt.path)
		}
		if rt.method != "" {
			m = m.Methods(rt.method)
		}
		m.Handler(h)
	}
	return r
}

// Patterns of the path variables.
const (
	modVar  = "{AM}"
	fileVar = "{path:(?:bin/[^/]+|conf/userconfig\\.xml)}"
	roleVar = "{role:Admin|Control|Monitor}"
)

func (s *Server) table() []route {
	mod := "/api/v1.0/modules/" + modVar
	get, post, put, del := http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete
	return []route{
		// Pages and session.
		{get, "/", false, roleOpen, "console", "the console: redirects to /console/en/monitoring", nil, "", "", s.handleRoot},
		{get, "/console/", true, roleOpen, "console", "the pages of the console (HTML, JavaScript, styles)", nil, "", "text/html", s.handleUI},
		{post, "/login", false, roleOpen, "session", "log in with httpd_username and httpd_password (form or JSON): sets the cookie sessionSK", nil, "Login", "Session", s.handleLogin},
		{post, "/logout", false, roleOpen, "session", "end the session", nil, "", "OK", s.handleLogout},
		{get, "/api/v1.0/session", false, roleOpen, "session", "the logged-in user, its role and the CSRF token to send in X-CSRF-Token; 401 when not logged in, saying whether a console user exists", nil, "", "Session", s.handleSession},
		{get, "/api/v1.0/openapi.json", false, roleOpen, "session", "this document", nil, "", "application/json", s.handleOpenAPI},

		// API keys.
		{post, "/api/v1.0/apikey/push/{name}", false, RoleAdmin, "apikey", "copy an API key (its hash) to every other node of the cluster", nil, "", "NodeResults", s.handleKeyPush},
		{post, "/api/v1.0/apikey/" + roleVar + "/{name}", false, RoleAdmin, "apikey", "create an API key with a role; the token is shown this once", nil, "", "NewKey", s.handleKeyCreate},
		{get, "/api/v1.0/apikey", false, RoleAdmin, "apikey", "the API keys of this node (never their tokens)", nil, "", "Keys", s.handleKeyList},
		{put, "/api/v1.0/apikey/{name}", false, RoleAdmin, "apikey", "install an API key by its hash (what push sends)", nil, "Key", "OK", s.handleKeyInstall},
		{del, "/api/v1.0/apikey/{name}", false, RoleAdmin, "apikey", "delete an API key of this node", nil, "", "OK", s.handleKeyDelete},

		// Probes.
		{get, "/var/modules/" + modVar + "/ready.txt", false, roleOpen, "probe", "health probe of load balancers: 200 OK when the module is PRIM, ALONE or UP and Ready, else 404", nil, "", "text/plain", s.handleReady},
		{http.MethodHead, "/var/modules/" + modVar + "/ready.txt", false, roleOpen, "probe", "the same probe, without the body", nil, "", "text/plain", s.handleReady},
		{get, mod + "/checkstate", false, roleOpen, "probe", "state of a module for the <module> checkers of other nodes", nil, "", "CheckState", s.handleCheckState},

		// Reads.
		{get, "/api/v1.0/level", false, RoleMonitor, "node", "version, host and OS of this node", nil, "", "Level", s.handleLevel},
		{get, "/api/v1.0/node", false, RoleMonitor, "node", "this node in cluster.xml", nil, "", "Node", s.handleNode},
		{get, "/api/v1.0/cluster", false, RoleMonitor, "cluster", "the cluster configuration: typed, as text, its signature and the nodes", nil, "", "Cluster", s.handleCluster},
		{get, "/api/v1.0/modules", false, RoleMonitor, "modules", "the modules of this node and their state (also `safekit cluster state`)", nil, "", "Modules", s.handleModules},
		{get, "/api/v1.0/application_modules", false, RoleMonitor, "modules", "the .safe files of SAFE/Application_Modules by section", nil, "", "AppModules", s.handleAppModules},
		{get, "/api/v1.0/application_modules/{section}/{file}", false, RoleMonitor, "modules", "download a .safe file of SAFE/Application_Modules", nil, "", "application/zip", s.handleAppModule},
		{get, mod + "/state", false, RoleMonitor, "modules", "the state of a module with its resources", nil, "", "Snapshot", s.handleState},
		{get, mod + "/log", false, RoleMonitor, "modules", "the module log, oldest first", []string{"n: number of messages (default 300)", "verbose: 1 for the verbose log", "after: only the messages after this seq"}, "", "LogEntries", s.handleLog},
		{get, mod + "/log.txt", false, RoleMonitor, "modules", "the whole module log as text, as safekit log prints it, oldest first, to download (AM_NODE_log.txt)", []string{"verbose: 1 for the verbose log"}, "", "text/plain", s.handleLogText},
		{get, mod + "/userlogs", false, RoleMonitor, "modules", "the script logs of a module, newest first", nil, "", "Userlogs", s.handleUserlogs},
		{get, mod + "/userlogs/{file}", false, RoleMonitor, "modules", "one script log (Range requests work)", nil, "", "text/plain", s.handleUserlog},
		{get, mod + "/config", false, RoleMonitor, "configuration", "userconfig.xml, its macros, the bin/ files, the diagnostics of confcheck and the typed configuration", nil, "", "ModuleConfig", s.handleConfig},
		{get, mod + "/files/" + fileVar, false, RoleMonitor, "configuration", "a file of the installed module: bin/NAME or conf/userconfig.xml", nil, "", "application/octet-stream", s.handleFileGet},
		{get, mod + "/confinfo", false, RoleMonitor, "configuration", "signature and date of the active and of the installed configuration", nil, "", "ConfInfo", s.handleConfInfo},
		{get, mod + "/lastconfig", false, RoleMonitor, "configuration", "the last successful configurations (SAFE/modules/lastconfig)", nil, "", "LastConfigs", s.handleLastConfig},
		{get, mod + "/download", false, RoleMonitor, "configuration", "the installed module as AM.safe", nil, "", "application/zip", s.handleDownload},
		{get, mod + "/snapshot", false, RoleMonitor, "debug", "a new dump, then the last 3 dumps and configurations as snapshot_NODE_AM.zip", nil, "", "application/zip", s.handleSnapshot},

		// Control.
		{post, mod + "/command", false, RoleControl, "control", "start, stop, restart, stopstart, forcestop, prim, primforce, second or swap the module on this node", nil, "Command", "CommandResult", s.handleCommand},
		{post, mod + "/settings", false, RoleControl, "control", "turn boot, checker, errd or failover on or off", nil, "Setting", "CommandResult", s.handleSetting},
		{post, mod + "/dump", false, RoleControl, "debug", "write a dump in SAFEVAR/snapshot/modules/AM", nil, "", "CommandResult", s.handleDump},

		// Configuration.
		{post, "/api/v1.0/cluster/check", false, RoleAdmin, "cluster", "check a cluster.xml without writing it", nil, "ClusterXML", "Check", s.handleClusterCheck},
		{put, "/api/v1.0/cluster", false, RoleAdmin, "cluster", "JSON {xml}: check and write SAFEVAR/cluster/cluster.xml (apply it with /cluster/apply); a zip: the cluster configuration of `safekit -H -G`", nil, "ClusterXML", "Check", s.handleClusterPut},
		{del, "/api/v1.0/cluster", false, RoleAdmin, "cluster", "unconfigure the cluster on nodes (safekit cluster deconfig on each; the other nodes first, this one last)", []string{"nodes: comma-separated nodes, when there is no body"}, "Nodes", "NodeResults", s.handleClusterDeconfig},
		{post, "/api/v1.0/cluster/probe", false, RoleAdmin, "cluster", "whether a safekitd answers at an address (not yet in cluster.xml) on this node's HTTP port, and which: its name, version, host; 2 s at most", nil, "Probe", "ProbeResult", s.handleClusterProbe},
		{post, "/api/v1.0/cluster/apply", false, RoleAdmin, "cluster", "safekit cluster config here, then -G to every other node", nil, "", "NodeResults", s.handleClusterApply},
		{post, "/api/v1.0/cli", false, RoleAdmin, "cluster", "run a safekit command on this node (safekit -H)", nil, "CLI", "Result", s.handleRemoteCLI},
		{post, mod + "/install", false, RoleAdmin, "configuration", "install a module from SAFE/Application_Modules (JSON {source, reinstall}) or from an uploaded .safe (multipart, field file)", nil, "Install", "CommandResult", s.handleInstall},
		{put, mod, false, RoleAdmin, "configuration", "install a module with an id, configured (safekit -H -E)", []string{"id: module id", "configure: 1 to configure it"}, "application/zip", "Result", s.handleModulePush},
		{put, mod + "/files/" + fileVar, false, RoleAdmin, "configuration", "write a file of the installed module", nil, "application/octet-stream", "Check", s.handleFilePut},
		{del, mod + "/files/" + fileVar, false, RoleAdmin, "configuration", "delete a bin/ file of the installed module", nil, "", "OK", s.handleFileDelete},
		{put, mod + "/macros", false, RoleAdmin, "configuration", "set the macros of userconfig.xml, keeping the rest of the file byte for byte", nil, "Macros", "Check", s.handleMacros},
		{post, mod + "/check", false, RoleAdmin, "configuration", "check the installed configuration (safekit confcheck)", nil, "", "Check", s.handleCheck},
		{post, mod + "/apply", false, RoleAdmin, "configuration", "apply the installed configuration on nodes: config here, -E elsewhere; refused on a node where the module is not stopped", nil, "Nodes", "NodeResults", s.handleApply},
		{post, mod + "/deconfig", false, RoleAdmin, "configuration", "deconfigure the module on nodes", nil, "Nodes", "NodeResults", s.handleDeconfig},
		{del, mod, false, RoleAdmin, "configuration", "uninstall the module on nodes (body {nodes} or ?nodes=a,b)", []string{"nodes: comma-separated nodes, when there is no body"}, "Nodes", "NodeResults", s.handleUninstall},
		{post, mod + "/restore", false, RoleAdmin, "configuration", "put a configuration of SAFE/modules/lastconfig back into SAFE/modules/AM", nil, "Restore", "CommandResult", s.handleRestore},

		// Streams.
		{get, mod + "/ws/log", false, RoleMonitor, "streams", "websocket: the module log as it is written", []string{"verbose: 1 for the verbose log", "after: resume after this seq", "n: start with the last n messages (default 0)"}, "", "LogMessage", s.handleWSLog},
		{get, mod + "/ws/userlog", false, RoleMonitor, "streams", "websocket: a script log from its start, then as it grows", []string{"file: the userlog file name, or latest:SCRIPT for the newest run of SCRIPT"}, "", "UserlogMessage", s.handleWSUserlog},
		{get, "/api/v1.0/ws/events", false, RoleMonitor, "streams", "websocket: the state of every module of every node, at each change", nil, "", "Event", s.handleWSEvents},
		{get, "/api/v1.0/ws/events-local", false, RoleMonitor, "streams", "websocket: the state of the modules of this node, at each change", nil, "", "Event", s.handleWSEventsLocal},

		// Other nodes.
		{"", "/api/v1.0/nodes/{node}/", true, RoleMonitor, "nodes", "the same API on another node of the cluster, through this one (websockets too)", nil, "", "", s.handleRelay},
	}
}

// secureHeaders adds the headers that keep the console in its own origin:
// no remote sources, no framing, no sniffing, no referrer.
func (s *Server) secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "+
			"connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if strings.HasPrefix(r.URL.Path, "/api/") || r.URL.Path == "/login" {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// toHTTPS sends browsers from the HTTP port to the HTTPS one once HTTPS is
// on. The health probes and the callers that authenticate with a password
// (`safekit -H` and the other nodes, which speak HTTP to the httpport of
// every node) are still served on HTTP.
func (s *Server) toHTTPS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		port := int(s.httpsPort.Load())
		_, _, basic := r.BasicAuth()
		probe := strings.HasPrefix(r.URL.Path, "/var/modules/") || strings.HasSuffix(r.URL.Path, "/checkstate")
		if port == 0 || r.TLS != nil || basic || probe {
			next.ServeHTTP(w, r)
			return
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		u := *r.URL
		u.Scheme, u.Host = "https", net.JoinHostPort(strings.Trim(host, "[]"), fmt.Sprint(port))
		http.Redirect(w, r, u.String(), http.StatusPermanentRedirect)
	})
}

func (s *Server) handleRoot(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/console/en/monitoring", http.StatusFound)
}

// placeholderPage is served under /console/ by a build without the UI.
const placeholderPage = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>SafeKit console</title></head>
<body>
<h1>SafeKit console</h1>
<p>This safekitd has no web pages built in. The REST API is served: see
<a href="/api/v1.0/openapi.json">/api/v1.0/openapi.json</a>.</p>
<p>To log in to the API, a console user is needed: on the node, run
<code>safekit webservercfg -passwd &lt;pwd&gt;</code>.</p>
</body></html>
`

func (s *Server) handleUI(w http.ResponseWriter, r *http.Request) {
	if s.ui != nil {
		s.ui.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(placeholderPage))
}

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, errorBody{Error: err.Error()})
}

// done is the answer of an operation that returns nothing else.
type done struct {
	OK bool `json:"ok"`
}

// maxJSONBody bounds the JSON bodies of requests.
const maxJSONBody = 4 << 20

// decodeJSON reads a JSON body into v, answering 400 when it cannot.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody)).Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("bad request body: %w", err))
		return false
	}
	return true
}

// randomToken returns 32 random bytes, base64url.
func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// clientIP is the address of the peer of a request.
func clientIP(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}
