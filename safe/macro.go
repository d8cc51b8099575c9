package safe

import (
	"fmt"
	"sort"
	"strings"
)

// Macro expansion (User's Guide 8.2 §13.2).
//
// A reference is %NAME% where NAME starts with a letter or '_' and goes on
// with letters, digits or '_' (the rules of environment variable names). It
// is replaced by the value of the <macro> of that name or, when there is
// none, by the environment variable of that name. Anything else that contains '%' is left as written: "50%",
// "%%", "% x %".
//
// Decisions where the guide is silent (docs/userconfig.md):
//   - An undefined reference (%X% with neither a macro nor an environment
//     variable X) is left as written and reported as a warning naming it.
//     Where the value then fails a check (not a path, not an address) the
//     error names the macro too.
//   - Macro values may themselves use macros and environment variables; they
//     are expanded when used. A macro that refers to itself, directly or
//     through others, is an error.
//   - Expansion applies to every attribute value and to element text
//     (including the CDATA rules of <failover>), never to names.

// MacroRef is one %NAME% found in a value.
type MacroRef struct {
	Name  string
	Start int // byte offset of the first '%'
	End   int // byte offset just after the closing '%'
}

// findMacroRefs returns the references of s, left to right.
func findMacroRefs(s string) []MacroRef {
	var refs []MacroRef
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		j := i + 1
		for j < len(s) && isMacroChar(s[j], j == i+1) {
			j++
		}
		if j > i+1 && j < len(s) && s[j] == '%' {
			refs = append(refs, MacroRef{Name: s[i+1 : j], Start: i, End: j + 1})
			i = j
		}
	}
	return refs
}

func isMacroChar(c byte, first bool) bool {
	switch {
	case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c == '_':
		return true
	case c >= '0' && c <= '9':
		return !first
	}
	return false
}

// maxExpansion bounds the expanded value of one macro. Macros that repeat
// each other ("%B%%B%" in A, "%C%%C%" in B...) grow exponentially; a real
// value is a path, an address or a list of service names.
const maxExpansion = 1 << 20

// Expander expands %NAME% references.
type Expander struct {
	macros map[string]string
	env    func(string) (string, bool)
	// undefined collects the names of references that nothing defines.
	undefined map[string]bool
	// done caches the expanded value of each macro, so that a macro used
	// many times is expanded once.
	done map[string]string
}

// NewExpander returns an expander over macros, falling back to env (which may
// be nil for no environment).
func NewExpander(macros map[string]string, env func(string) (string, bool)) *Expander {
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	return &Expander{macros: macros, env: env, undefined: map[string]bool{}, done: map[string]string{}}
}

// Expand returns s with every defined reference replaced.
func (x *Expander) Expand(s string) (string, error) {
	return x.expand(s, nil)
}

func (x *Expander) expand(s string, stack []string) (string, error) {
	refs := findMacroRefs(s)
	if len(refs) == 0 {
		return s, nil
	}
	var b strings.Builder
	last := 0
	for _, r := range refs {
		b.WriteString(s[last:r.Start])
		last = r.End
		if v, ok := x.macros[r.Name]; ok {
			ev, done := x.done[r.Name]
			if !done {
				for _, n := range stack {
					if n == r.Name {
						return "", fmt.Errorf("macro %s refers to itself (%s -> %s)", r.Name, strings.Join(stack, " -> "), r.Name)
					}
				}
				var err error
				if ev, err = x.expand(v, append(stack, r.Name)); err != nil {
					return "", err
				}
				x.done[r.Name] = ev
			}
			if b.Len()+len(ev) > maxExpansion {
				if len(stack) == 0 {
					return "", fmt.Errorf("the value is longer than %d bytes once its macros are expanded: check the macros it uses", maxExpansion)
				}
				return "", fmt.Errorf("macro %s is longer than %d bytes once expanded: check the macros it uses", stack[len(stack)-1], maxExpansion)
			}
			b.WriteString(ev)
			continue
		}
		if v, ok := x.env(r.Name); ok {
			b.WriteString(v)
			continue
		}
		x.undefined[r.Name] = true
		b.WriteString(s[r.Start:r.End])
	}
	b.WriteString(s[last:])
	return b.String(), nil
}

// Undefined returns, sorted, the names referenced but defined nowhere.
func (x *Expander) Undefined() []string {
	out := make([]string, 0, len(x.undefined))
	for n := range x.undefined {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// emptyMacros returns the macros referenced by raw whose value expands to
// the empty string: the placeholders a console is expected to fill.
func (x *Expander) emptyMacros(raw string) []string {
	var out []string
	for _, r := range findMacroRefs(raw) {
		if v, ok := x.macros[r.Name]; ok {
			if ev, err := x.Expand(v); err == nil && strings.TrimSpace(ev) == "" {
				out = append(out, r.Name)
			}
		}
	}
	return out
}
