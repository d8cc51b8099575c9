package safe

import (
	"fmt"
	"sort"
	"strings"
)

// Severity of a Diagnostic.
type Severity int

const (
	// Error prevents the configuration from being applied.
	Error Severity = iota
	// Warning is printed; the configuration can still be applied.
	Warning
)

// Diagnostic is one problem found in a configuration file, positioned at the
// element it concerns. Its text names the fix.
type Diagnostic struct {
	File    string
	Pos     Pos
	Element string // tag name without brackets; empty for file-level problems
	// Attr is the attribute of Element the problem is about ("dir",
	// "name"), empty when it concerns the element as a whole. String
	// leaves it out (the message names it): it is for editors that point
	// at the field.
	Attr     string
	Severity Severity
	Msg      string
}

// String renders the diagnostic the way compilers do:
//
//	userconfig.xml:14:5: <heartbeat>: name "lan9" is not a lan of cluster.xml (lans: default)
//	userconfig.xml:20:3: <vhost>: warning: loaded and checked, but virtual hostnames are not set by this version
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(d.File)
	if d.Pos.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", d.Pos.Line, d.Pos.Col)
	}
	b.WriteString(": ")
	if d.Element != "" {
		b.WriteString("<" + d.Element + ">: ")
	}
	if d.Severity == Warning {
		b.WriteString("warning: ")
	}
	b.WriteString(d.Msg)
	return b.String()
}

// Error makes a Diagnostic usable as an error (syntax errors are returned
// that way).
func (d *Diagnostic) Error() string { return d.String() }

// Diagnostics is the list of problems of one check.
type Diagnostics []Diagnostic

// Errors returns only the errors.
func (ds Diagnostics) Errors() Diagnostics { return ds.filter(Error) }

// Warnings returns only the warnings.
func (ds Diagnostics) Warnings() Diagnostics { return ds.filter(Warning) }

func (ds Diagnostics) filter(s Severity) Diagnostics {
	var out Diagnostics
	for _, d := range ds {
		if d.Severity == s {
			out = append(out, d)
		}
	}
	return out
}

// HasErrors tells whether the configuration must be refused.
func (ds Diagnostics) HasErrors() bool { return len(ds.Errors()) > 0 }

// Err returns nil when there is no error, else an error listing every error
// (one per line).
func (ds Diagnostics) Err() error {
	errs := ds.Errors()
	if len(errs) == 0 {
		return nil
	}
	return &DiagnosticsError{List: errs}
}

// sorted returns the diagnostics in file order, errors before warnings at the
// same position, so that output is stable.
func (ds Diagnostics) sorted() Diagnostics {
	out := append(Diagnostics(nil), ds...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line < b.Pos.Line
		}
		if a.Pos.Col != b.Pos.Col {
			return a.Pos.Col < b.Pos.Col
		}
		return a.Severity < b.Severity
	})
	return out
}

// DiagnosticsError carries the errors of a refused configuration.
type DiagnosticsError struct{ List Diagnostics }

func (e *DiagnosticsError) Error() string {
	lines := make([]string, len(e.List))
	for i, d := range e.List {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}
