package safe

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docsPath is the user reference whose generated parts come from the schema
// table and from the corpus decisions of corpus_test.go.
var docsPath = filepath.Join("..", "docs", "userconfig.md")

// TestDocsGenerated fails when a generated part of docs/userconfig.md no
// longer matches what it is generated from; -update rewrites it.
func TestDocsGenerated(t *testing.T) {
	data, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	for _, part := range []struct{ name, text string }{
		{"schema", schemaMarkdown()},
		{"not-enforced", notEnforcedMarkdown()},
		{"guide-mistakes", guideMistakesMarkdown()},
	} {
		begin := "<!-- BEGIN GENERATED " + part.name + ": go test ./safe -run TestDocsGenerated -update -->\n"
		end := "<!-- END GENERATED " + part.name + " -->"
		i, j := strings.Index(doc, begin), strings.Index(doc, end)
		if i < 0 || j < i {
			t.Fatalf("%s: no %q ... %q markers", docsPath, begin, end)
		}
		got := doc[i+len(begin) : j]
		if got == part.text {
			continue
		}
		if !*update {
			t.Errorf("%s: the generated part %q is stale: run go test ./safe -run TestDocsGenerated -update", docsPath, part.name)
			continue
		}
		doc = doc[:i+len(begin)] + part.text + doc[j:]
	}
	if *update {
		if err := os.WriteFile(docsPath, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// schemaMarkdown renders the schema table: one section per element, with
// its attributes, in document order. An element that appears under several
// parents is described once.
func schemaMarkdown() string {
	var b strings.Builder
	seen := map[*elemSpec]string{}
	var walk func(s *elemSpec, parents []string)
	walk = func(s *elemSpec, parents []string) {
		where := "<" + strings.Join(parents, "><") + ">"
		if first, ok := seen[s]; ok {
			fmt.Fprintf(&b, "#### `<%s>` in `%s`\n\nAs in `%s` above.\n\n", s.tag, where, first)
			return
		}
		seen[s] = where
		if len(parents) == 0 {
			fmt.Fprintf(&b, "#### `<%s>`\n\n", s.tag)
		} else {
			fmt.Fprintf(&b, "#### `<%s>` in `%s`\n\n", s.tag, where)
		}
		var notes []string
		if s.doc != "" {
			notes = append(notes, capitalize(escapeMD(s.doc))+".")
		}
		if len(parents) > 0 {
			if s.many {
				notes = append(notes, "May be repeated.")
			} else {
				notes = append(notes, "At most once.")
			}
		}
		if s.legacy {
			notes = append(notes, "Pre-7.2 syntax: do not mix it with the 7.2 syntax in one file.")
		}
		if s.notEnforced != "" {
			notes = append(notes, "Loaded and checked, but "+escapeMD(s.notEnforced)+" (a warning says so).")
		}
		if len(notes) > 0 {
			b.WriteString(strings.Join(notes, " ") + "\n\n")
		}
		if len(s.attrs) > 0 {
			b.WriteString("| attribute | type | unit | default | notes |\n| --- | --- | --- | --- | --- |\n")
			for _, a := range s.attrs {
				fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", a.name, attrType(a), attrUnit(a), attrDefault(a), attrNotes(a))
			}
			b.WriteString("\n")
		}
		if len(s.children) > 0 {
			tags := make([]string, len(s.children))
			for i, c := range s.children {
				tags[i] = "`<" + c.tag + ">`"
			}
			fmt.Fprintf(&b, "Children: %s.\n\n", strings.Join(tags, ", "))
		}
		for _, c := range s.children {
			walk(c, append(slices.Clone(parents), s.tag))
		}
	}
	b.WriteString("### userconfig.xml\n\n")
	walk(userconfigSpec, nil)
	b.WriteString("### cluster.xml\n\n")
	walk(clusterSpec, nil)
	return b.String()
}

func attrType(a attrSpec) string {
	switch a.kind {
	case kEnum:
		return codeList(a.enum)
	case kOnOff:
		return "`on`, `off`"
	case kYesNo:
		return "`yes`, `no`"
	case kInt:
		return fmt.Sprintf("integer ≥ %d", a.min)
	case kTime:
		return "time"
	case kPath:
		return "absolute path"
	case kRelPath:
		return "relative path"
	case kPort:
		if len(a.enum) > 0 {
			return "port 1-65535 or " + codeList(a.enum)
		}
		return "port 1-65535"
	case kAddr:
		return "address"
	}
	return "text"
}

func codeList(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = "`" + v + "`"
	}
	return strings.Join(q, ", ")
}

func attrUnit(a attrSpec) string {
	if a.kind != kTime {
		return ""
	}
	return unitName(a.unit)
}

func attrDefault(a attrSpec) string {
	switch {
	case a.required:
		return "required"
	case a.def != "":
		return "`" + a.def + "`"
	}
	return ""
}

func attrNotes(a attrSpec) string {
	var notes []string
	if a.obsolete != "" {
		notes = append(notes, escapeMD(a.obsolete)+": ignored, with a warning")
	}
	if a.doc != "" {
		notes = append(notes, escapeMD(a.doc))
	}
	if a.emptyOK {
		notes = append(notes, "may be empty")
	}
	return strings.Join(notes, "; ")
}

var mdSpecial = strings.NewReplacer("<", "&lt;", ">", "&gt;", "|", `\|`, "*", `\*`, "_", `\_`)

// escapeMD escapes free text, leaving `code` spans as written.
func escapeMD(s string) string {
	parts := strings.Split(s, "`")
	for i := 0; i < len(parts); i += 2 {
		parts[i] = mdSpecial.Replace(parts[i])
	}
	return strings.Join(parts, "`")
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// notEnforcedMarkdown lists the sections that are loaded and checked but not
// acted on, with the warning each one gets.
func notEnforcedMarkdown() string {
	var b strings.Builder
	b.WriteString("| section | warning |\n| --- | --- |\n")
	var walk func(s *elemSpec, parents []string)
	walk = func(s *elemSpec, parents []string) {
		if s.notEnforced != "" {
			fmt.Fprintf(&b, "| `<%s>` in `<%s>` | loaded and checked, but %s |\n", s.tag, strings.Join(parents, "><"), escapeMD(s.notEnforced))
		}
		for _, c := range s.children {
			walk(c, append(slices.Clone(parents), s.tag))
		}
	}
	walk(userconfigSpec, nil)
	return b.String()
}

// guideMistakesMarkdown renders the decisions of corpus_test.go for the
// corpus files that keep a mistake of the guide or a template placeholder.
func guideMistakesMarkdown() string {
	placeholder := regexp.MustCompile(`\$\{`)
	var rels []string
	for rel, f := range corpusFiles {
		if guideMistake.MatchString(rel) || slices.ContainsFunc(f.errors, placeholder.MatchString) {
			rels = append(rels, rel)
		}
	}
	slices.Sort(rels)
	var b strings.Builder
	b.WriteString("| corpus file | errors |\n| --- | --- |\n")
	for _, rel := range rels {
		errs := make([]string, len(corpusFiles[rel].errors))
		for i, e := range corpusFiles[rel].errors {
			errs[i] = "`" + strings.ReplaceAll(e, "|", `\|`) + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s |\n", rel, strings.Join(errs, "<br>"))
	}
	return b.String()
}
