package console

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

// Macro is a <macro name value> of userconfig.xml, its value as written
// (before expansion).
type Macro struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// The macros form of the console edits userconfig.xml in place: only the
// bytes of the macros it changes move, so that comments, layout and the
// rest of a hand-written file stay as they are.

// macroElem is a top-level <macro> of a file, located in its bytes.
type macroElem struct {
	name string
	// start and end delimit the element; tagEnd ends its start tag.
	start, tagEnd, end int
	// value and valueEnd delimit the text of the value attribute (between
	// the quotes); hasValue is false without one, nameEnd is then where it
	// goes (after the closing quote of name).
	hasValue        bool
	value, valueEnd int
	nameEnd         int
	quote           byte
	decodedValue    string
}

// macroLayout is what setMacros needs to know of a file.
type macroLayout struct {
	macros []macroElem
	// rootTagEnd ends the start tag of the root element; firstChild is the
	// start of its first child element (-1 when none).
	rootTagEnd, firstChild int
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// scanMacros locates the top-level macros of userconfig.xml.
func scanMacros(data []byte) (macroLayout, error) {
	lay := macroLayout{firstChild: -1}
	shift := 0
	if bytes.HasPrefix(data, utf8BOM) {
		shift = len(utf8BOM)
	}
	dec := xml.NewDecoder(bytes.NewReader(data[shift:]))
	dec.Strict = true
	depth := 0
	var open *macroElem
	for {
		start := int(dec.InputOffset()) + shift
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return lay, fmt.Errorf("userconfig.xml is not well-formed XML: %w", err)
		}
		end := int(dec.InputOffset()) + shift
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch depth {
			case 1:
				lay.rootTagEnd = end
			case 2:
				if lay.firstChild < 0 {
					lay.firstChild = start
				}
				if t.Name.Local == "macro" {
					m, err := locateMacro(data, start, end)
					if err != nil {
						return lay, err
					}
					open = &m
				}
			}
		case xml.EndElement:
			if depth == 2 && open != nil {
				open.end = end
				lay.macros = append(lay.macros, *open)
				open = nil
			}
			depth--
		}
	}
	if lay.rootTagEnd == 0 {
		return lay, errors.New("userconfig.xml has no root element (<safe>)")
	}
	return lay, nil
}

// locateMacro reads the attributes of the start tag data[start:tagEnd].
func locateMacro(data []byte, start, tagEnd int) (macroElem, error) {
	m := macroElem{start: start, tagEnd: tagEnd, end: tagEnd}
	i := start + len("<macro")
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
	for i < tagEnd {
		for i < tagEnd && isSpace(data[i]) {
			i++
		}
		if i >= tagEnd || data[i] == '/' || data[i] == '>' {
			break
		}
		nameStart := i
		for i < tagEnd && data[i] != '=' && !isSpace(data[i]) {
			i++
		}
		attr := string(data[nameStart:i])
		for i < tagEnd && (isSpace(data[i]) || data[i] == '=') {
			i++
		}
		if i >= tagEnd || (data[i] != '"' && data[i] != '\'') {
			return m, fmt.Errorf("<macro> at byte %d: attribute %s has no quoted value", start, attr)
		}
		q := data[i]
		vStart := i + 1
		vEnd := bytes.IndexByte(data[vStart:tagEnd], q)
		if vEnd < 0 {
			return m, fmt.Errorf("<macro> at byte %d: unterminated value of %s", start, attr)
		}
		vEnd += vStart
		raw := string(data[vStart:vEnd])
		switch attr {
		case "name":
			m.name, m.nameEnd = unescapeAttr(raw), vEnd+1
		case "value":
			m.hasValue, m.value, m.valueEnd, m.quote, m.decodedValue = true, vStart, vEnd, q, unescapeAttr(raw)
		}
		i = vEnd + 1
	}
	if m.name == "" {
		return m, fmt.Errorf("<macro> at byte %d has no name", start)
	}
	return m, nil
}

// unescapeAttr decodes the references of an attribute value.
func unescapeAttr(raw string) string {
	var v struct {
		A string `xml:"a,attr"`
	}
	if xml.Unmarshal([]byte(`<x a="`+strings.ReplaceAll(raw, `"`, "&quot;")+`"/>`), &v) != nil {
		return raw
	}
	return v.A
}

// escapeAttr writes v as the text of an attribute quoted with q.
func escapeAttr(v string, q byte) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "\n", "&#10;", "\r", "&#13;", "\t", "&#9;", string(q), map[byte]string{'"': "&quot;", '\'': "&apos;"}[q])
	return r.Replace(v)
}

// readMacros returns the top-level macros of userconfig.xml, in file order.
func readMacros(data []byte) ([]Macro, error) {
	lay, err := scanMacros(data)
	if err != nil {
		return nil, err
	}
	out := []Macro{}
	for _, m := range lay.macros {
		out = append(out, Macro{Name: m.name, Value: m.decodedValue})
	}
	return out, nil
}

var macroNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

// edit replaces data[start:end] by text.
type edit struct {
	start, end int
	text       string
}

// setMacros makes the macros of userconfig.xml those of ms: the value of a
// macro already there is replaced where it stands, a new macro is added
// after the last one (or first in <safe>) with the same indentation, and a
// macro not in ms is removed with its line. Every other byte is kept.
func setMacros(data []byte, ms []Macro) ([]byte, error) {
	want := map[string]string{}
	for _, m := range ms {
		if !macroNameRE.MatchString(m.Name) {
			return nil, fmt.Errorf("invalid macro name %q: use letters, digits, '_', '.' and '-'", m.Name)
		}
		if _, dup := want[m.Name]; dup {
			return nil, fmt.Errorf("macro %s is given twice", m.Name)
		}
		want[m.Name] = m.Value
	}
	lay, err := scanMacros(data)
	if err != nil {
		return nil, err
	}
	var edits []edit
	present := map[string]bool{}
	for _, m := range lay.macros {
		v, keep := want[m.name]
		present[m.name] = true
		switch {
		case !keep:
			edits = append(edits, removal(data, m))
		case m.hasValue && v != m.decodedValue:
			edits = append(edits, edit{m.value, m.valueEnd, escapeAttr(v, m.quote)})
		case !m.hasValue && v != "":
			edits = append(edits, edit{m.nameEnd, m.nameEnd, ` value="` + escapeAttr(v, '"') + `"`})
		}
	}
	// New macros go after the last one kept, else first in the root
	// element, indented as the macro or the element they follow.
	var added strings.Builder
	at, indent := lay.rootTagEnd, "  "
	ref := lay.firstChild
	for _, m := range lay.macros {
		if _, keep := want[m.name]; keep {
			at, ref = m.end, m.start
		}
	}
	if ref >= 0 {
		if ind, ok := lineIndent(data, ref); ok {
			indent = ind
		}
	}
	newline := "\n"
	if bytes.Contains(data, []byte("\r\n")) {
		newline = "\r\n"
	}
	for _, m := range ms {
		if !present[m.Name] {
			fmt.Fprintf(&added, `%s%s<macro name="%s" value="%s"/>`, newline, indent, escapeAttr(m.Name, '"'), escapeAttr(m.Value, '"'))
		}
	}
	if added.Len() > 0 {
		edits = append(edits, edit{at, at, added.String()})
	}
	// From the end of the file, so that offsets stay right; at the same
	// place, a removal before an insertion.
	sort.Slice(edits, func(i, j int) bool {
		if edits[i].start != edits[j].start {
			return edits[i].start > edits[j].start
		}
		return edits[i].end > edits[j].end
	})
	out := append([]byte(nil), data...)
	for _, e := range edits {
		out = append(out[:e.start:e.start], append([]byte(e.text), out[e.end:]...)...)
	}
	return out, nil
}

// lineIndent returns the blanks before offset on its line, when only
// blanks are there.
func lineIndent(data []byte, offset int) (string, bool) {
	ls := bytes.LastIndexByte(data[:offset], '\n') + 1
	ind := data[ls:offset]
	if len(bytes.Trim(ind, " \t")) != 0 {
		return "", false
	}
	return string(ind), true
}

// removal deletes a macro element; alone on its line, the line goes too.
func removal(data []byte, m macroElem) edit {
	ls := bytes.LastIndexByte(data[:m.start], '\n') + 1
	rest := data[m.end:]
	eol := bytes.IndexByte(rest, '\n')
	if _, alone := lineIndent(data, m.start); alone && eol >= 0 && len(bytes.TrimSpace(rest[:eol])) == 0 {
		return edit{ls, m.end + eol + 1, ""}
	}
	return edit{m.start, m.end, ""}
}
