package console

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/gorilla/mux"
)

// TestOpenAPICoversTheRouter: every route of the router is in the OpenAPI
// document, with its methods, and the document has nothing else.
func TestOpenAPICoversTheRouter(t *testing.T) {
	n := newTestNode(t, "node1", nodeOptions{})
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
		Comp    struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	n.anonymous().json(http.MethodGet, "/api/v1.0/openapi.json", nil, http.StatusOK, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	inDoc := map[string]bool{}
	for p, ops := range doc.Paths {
		for m := range ops {
			inDoc[strings.ToUpper(m)+" "+p] = true
		}
	}
	inRouter := map[string]bool{}
	err := n.srv.router.Walk(func(r *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err := r.GetPathTemplate()
		if err != nil {
			return err
		}
		re, _ := r.GetPathRegexp()
		p := docPath(tpl, !strings.HasSuffix(re, "$"))
		methods, err := r.GetMethods()
		if err != nil {
			methods = anyMethods
		}
		for _, m := range methods {
			inRouter[m+" "+p] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var missing, extra []string
	for k := range inRouter {
		if !inDoc[k] {
			missing = append(missing, k)
		}
	}
	for k := range inDoc {
		if !inRouter[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 || len(inRouter) < 50 {
		t.Errorf("routes not in openapi.json: %q\nopenapi.json operations not routed: %q\n(%d routes)", missing, extra, len(inRouter))
	}
	// Every schema a route names is defined, and so is every $ref.
	raw, _ := json.Marshal(doc.Paths)
	schemas, _ := json.Marshal(doc.Comp.Schemas)
	for _, s := range []string{string(raw), string(schemas)} {
		for _, part := range strings.Split(s, `"$ref":"#/components/schemas/`)[1:] {
			name, _, _ := strings.Cut(part, `"`)
			if doc.Comp.Schemas[name] == nil {
				t.Errorf("$ref to undefined schema %s", name)
			}
		}
	}
	for _, name := range []string{"Session", "Snapshot", "module.Snapshot", "Event", "LogMessage", "safe.Config"} {
		if doc.Comp.Schemas[name] == nil {
			t.Errorf("no schema %s", name)
		}
	}
}
