package console

import (
	"encoding"
	"encoding/json"
	"go/token"
	"net/http"
	"path"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/safekit-oss/safekit/runtime/modlog"
	"github.com/safekit-oss/safekit/runtime/module"
)

// The OpenAPI document is made from the table of routes (server.go) and
// from the Go types of the bodies, so that it cannot drift from the code:
// the schema of each body is derived from its type by reflection.

// remoteCommand is the body of POST /api/v1.0/cli (the daemon decodes it).
type remoteCommand struct {
	// Args is the command line after "safekit".
	Args []string `json:"args"`
}

// bodies names the schemas of the routes' bodies.
var bodies = map[string]any{
	"Login":          loginRequest{},
	"Session":        Session{},
	"OK":             done{},
	"Error":          errorBody{},
	"NewKey":         NewKey{},
	"Key":            Key{},
	"Keys":           []Key{},
	"NodeResults":    []NodeResult{},
	"CheckState":     CheckState{},
	"Level":          Level{},
	"Node":           Node{},
	"Cluster":        ClusterInfo{},
	"Modules":        Modules{},
	"AppModules":     map[string][]AppModule{},
	"Snapshot":       module.Snapshot{},
	"LogEntries":     []modlog.Entry{},
	"Userlogs":       []Userlog{},
	"ModuleConfig":   ModuleConfig{},
	"ConfInfo":       ConfInfo{},
	"LastConfigs":    []LastConfig{},
	"Command":        Command{},
	"Setting":        Setting{},
	"CommandResult":  CommandResult{},
	"ClusterXML":     ClusterXML{},
	"Check":          Check{},
	"CLI":            remoteCommand{},
	"Result":         Result{},
	"Install":        Install{},
	"Macros":         []Macro{},
	"Nodes":          Nodes{},
	"Probe":          Probe{},
	"ProbeResult":    ProbeResult{},
	"Restore":        Restore{},
	"LogMessage":     LogMessage{},
	"UserlogMessage": UserlogMessage{},
	"Event":          Event{},
}

var varRE = regexp.MustCompile(`\{([A-Za-z0-9_]+)(:[^{}]*(\{[^{}]*\}[^{}]*)*)?\}`)

// docPath is the OpenAPI path of a route: variables without their
// patterns, and a last variable for what a prefix route matches.
func docPath(p string, prefix bool) string {
	p = varRE.ReplaceAllString(p, "{$1}")
	if prefix {
		switch {
		case strings.HasPrefix(p, "/console/"):
			p += "{page}"
		default:
			p += "{path}"
		}
	}
	return p
}

// anyMethods are the methods a route without one is documented with.
var anyMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete}

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.openAPI())
}

// openAPI is the OpenAPI 3 document of the web service.
func (s *Server) openAPI() map[string]any {
	g := &schemaGen{defs: map[string]any{}}
	names := make([]string, 0, len(bodies))
	for n := range bodies {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		sch := g.of(reflect.TypeOf(bodies[n]))
		if _, same := g.defs[n]; !same {
			g.defs[n] = sch
		}
	}
	paths := map[string]map[string]any{}
	for _, rt := range s.table() {
		p := docPath(rt.path, rt.prefix)
		if paths[p] == nil {
			paths[p] = map[string]any{}
		}
		methods := []string{rt.method}
		if rt.method == "" {
			methods = anyMethods
		}
		for _, m := range methods {
			paths[p][strings.ToLower(m)] = operation(rt, p, m)
		}
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":   "SafeKit-compatible node API",
			"version": "1.0",
			"description": "The REST API and websockets of a node's web service (safekitd, port 9010). " +
				"Authenticate with the cookie sessionSK of POST /login (and send the csrf of GET /api/v1.0/session in X-CSRF-Token with every POST, PUT and DELETE), " +
				"with an API key (Authorization: Bearer), or with a password (HTTP basic). " +
				"x-safekit-role gives the least role of each operation: Monitor reads, Control acts on modules, Admin configures. " +
				"Every /api/v1.0/ path is also served for another node of the cluster under /api/v1.0/nodes/NODE/.",
		},
		"paths": paths,
		"components": map[string]any{
			"schemas": g.defs,
			"securitySchemes": map[string]any{
				"session":  map[string]any{"type": "apiKey", "in": "cookie", "name": sessionCookie},
				"apikey":   map[string]any{"type": "http", "scheme": "bearer"},
				"password": map[string]any{"type": "http", "scheme": "basic"},
			},
		},
	}
}

func ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }

// content describes a body: a schema name, or a media type.
func content(body string) map[string]any {
	if strings.Contains(body, "/") {
		return map[string]any{body: map[string]any{"schema": map[string]any{"type": "string", "format": "binary"}}}
	}
	return map[string]any{"application/json": map[string]any{"schema": ref(body)}}
}

func operation(rt route, p, method string) map[string]any {
	op := map[string]any{
		"summary":     rt.summary,
		"tags":        []string{rt.tag},
		"operationId": strings.ToLower(method) + strings.NewReplacer("/api/v1.0", "", "/", "_", "{", "", "}", "", ".", "_", "-", "_").Replace(p),
	}
	role := rt.role
	if role == roleOpen {
		role = "none"
		op["security"] = []any{}
	} else {
		op["security"] = []any{map[string]any{"session": []any{}}, map[string]any{"apikey": []any{}}, map[string]any{"password": []any{}}}
	}
	op["x-safekit-role"] = role
	var params []any
	for _, m := range regexp.MustCompile(`\{([A-Za-z0-9_]+)\}`).FindAllStringSubmatch(p, -1) {
		params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
	}
	for _, q := range rt.query {
		name, desc, _ := strings.Cut(q, ": ")
		params = append(params, map[string]any{"name": name, "in": "query", "description": desc, "schema": map[string]any{"type": "string"}})
	}
	if params != nil {
		op["parameters"] = params
	}
	if rt.in != "" && method != http.MethodGet {
		op["requestBody"] = map[string]any{"content": content(rt.in)}
	}
	responses := map[string]any{}
	switch {
	case strings.Contains(p, "/ws/"):
		responses["101"] = map[string]any{"description": "a websocket; each message is a JSON " + rt.out}
		op["x-websocket-message"] = ref(rt.out)
	case rt.out == "":
		responses["default"] = map[string]any{"description": "a redirection, or the answer of the other node"}
	default:
		responses["200"] = map[string]any{"description": "OK", "content": content(rt.out)}
	}
	errs := map[string]string{"400": "bad request", "404": "not found"}
	if rt.role != roleOpen {
		errs["401"] = "not authenticated"
		errs["403"] = "the role is not enough, or a CSRF token or Origin is wrong"
	}
	for code, desc := range errs {
		responses[code] = map[string]any{"description": desc, "content": content("Error")}
	}
	op["responses"] = responses
	return op
}

// schemaGen derives JSON schemas from Go types; named structs become
// components.
type schemaGen struct {
	defs map[string]any
}

var (
	timeType = reflect.TypeOf(time.Time{})
	rawType  = reflect.TypeOf(json.RawMessage{})
	textType = reflect.TypeOf((*encoding.TextMarshaler)(nil)).Elem()
)

// componentName names a struct type: bare for this package, prefixed by
// its package otherwise ("safe.Config").
func componentName(t reflect.Type) string {
	if t.PkgPath() == reflect.TypeOf(Server{}).PkgPath() {
		return t.Name()
	}
	return path.Base(t.PkgPath()) + "." + t.Name()
}

func (g *schemaGen) of(t reflect.Type) map[string]any {
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == rawType:
		return map[string]any{}
	case t.Kind() != reflect.Pointer && t.Kind() != reflect.Struct && t.Implements(textType):
		return map[string]any{"type": "string"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		inner := g.of(t.Elem())
		if _, isRef := inner["$ref"]; isRef {
			return map[string]any{"allOf": []any{inner}, "nullable": true}
		}
		inner["nullable"] = true
		return inner
	case reflect.Struct:
		if t.Implements(textType) {
			return map[string]any{"type": "string"}
		}
		if !token.IsExported(t.Name()) {
			return g.object(t)
		}
		name := componentName(t)
		if _, done := g.defs[name]; !done {
			g.defs[name] = map[string]any{} // against recursion
			g.defs[name] = g.object(t)
		}
		return ref(name)
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": g.of(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.of(t.Elem())}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	}
	return map[string]any{}
}

// object is the schema of a struct: its JSON fields, embedded structs
// flattened.
func (g *schemaGen) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" || (!f.IsExported() && !f.Anonymous) {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			if name == "" {
				name = f.Name
			}
			props[name] = g.of(f.Type)
			if !strings.Contains(opts, "omitempty") {
				required = append(required, name)
			}
		}
	}
	walk(t)
	o := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		sort.Strings(required)
		o["required"] = required
	}
	return o
}
