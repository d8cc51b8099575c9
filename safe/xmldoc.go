package safe

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/beevik/etree"
)

// Pos is a 1-based line and column (in bytes) in a source file.
type Pos struct {
	Line int `json:"-"`
	Col  int `json:"-"`
}

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Col) }

// xmlDoc is a parsed XML file: the etree tree, which the rest of the package
// reads and writes, plus the source position of every element. etree keeps
// no positions, so they come from a separate encoding/xml pass whose
// StartElement tokens are matched to the etree elements in document order.
type xmlDoc struct {
	file string
	tree *etree.Document
	pos  map[*etree.Element]Pos
	// roots are the top-level elements, in order. A well-formed document has
	// exactly one; fragments and the guide's broken examples have more.
	roots []*etree.Element
}

// utf8BOM is skipped: editors on Windows write it and XML allows it.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// parseXML parses data as XML. It never panics on bad input: a document that
// is not well-formed gives a *Diagnostic with the line and column of the
// problem.
func parseXML(file string, data []byte) (*xmlDoc, error) {
	data = bytes.TrimPrefix(data, utf8BOM)
	return parseWrapped(file, data, newLineIndex(data), 0)
}

// fragmentRoot wraps a fragment so that it parses as one document.
const fragmentRoot = "fragment"

// parseFragmentXML parses a sequence of elements that has no root of its own.
// Positions refer to the fragment's own bytes.
func parseFragmentXML(file string, data []byte) (*xmlDoc, error) {
	data = bytes.TrimPrefix(data, utf8BOM)
	open, close := "<"+fragmentRoot+">", "</"+fragmentRoot+">"
	wrapped := make([]byte, 0, len(data)+len(open)+len(close))
	wrapped = append(append(append(wrapped, open...), data...), close...)
	d, err := parseWrapped(file, wrapped, newLineIndex(data), len(open))
	if err != nil {
		return nil, err
	}
	// The wrapper is the single root; its children are the fragment's roots.
	w := d.roots[0]
	delete(d.pos, w)
	d.roots = w.ChildElements()
	d.tree = etree.NewDocument()
	for _, r := range d.roots {
		d.tree.AddChild(r)
	}
	return d, nil
}

// parseWrapped parses data; shift bytes at its start are not part of the
// file that lines indexes (the fragment wrapper).
func parseWrapped(file string, data []byte, lines lineIndex, shift int) (*xmlDoc, error) {
	starts, err := scanStarts(file, data, lines, shift)
	if err != nil {
		return nil, err
	}

	tree := etree.NewDocument()
	tree.ReadSettings = etree.ReadSettings{CharsetReader: charsetReader, PreserveCData: true}
	if err := tree.ReadFromBytes(data); err != nil {
		// The encoding/xml pass accepted the document; etree uses the same
		// decoder, so this is unexpected. Report it at the top of the file.
		return nil, &Diagnostic{File: file, Pos: Pos{1, 1}, Msg: "XML syntax error: " + err.Error()}
	}

	d := &xmlDoc{file: file, tree: tree, pos: make(map[*etree.Element]Pos, len(starts))}
	i := 0
	var walk func(e *etree.Element)
	walk = func(e *etree.Element) {
		if i < len(starts) {
			d.pos[e] = starts[i]
		}
		i++
		for _, c := range e.ChildElements() {
			walk(c)
		}
	}
	for _, r := range tree.ChildElements() {
		d.roots = append(d.roots, r)
		walk(r)
	}
	if i != len(starts) {
		return nil, &Diagnostic{File: file, Pos: Pos{1, 1},
			Msg: fmt.Sprintf("internal error: %d elements in the tree, %d in the source", i, len(starts))}
	}
	return d, nil
}

// scanStarts runs encoding/xml over data and returns the position of the '<'
// of every start element, in document order. It also turns the decoder's
// syntax errors, which carry only a line, into positioned diagnostics.
func scanStarts(file string, data []byte, lines lineIndex, shift int) ([]Pos, error) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	dec.CharsetReader = charsetReader
	var starts []Pos
	type element struct {
		name string
		pos  Pos
	}
	var open []element // the elements not closed yet, outermost first
	outside := 0       // the depth of text outside the file's elements
	if shift > 0 {
		outside = 1 // inside the fragment wrapper
	}
	for {
		off := int(dec.InputOffset()) - shift
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return starts, nil
		}
		var se *xml.SyntaxError
		if errors.As(err, &se) && se.Msg == "unexpected EOF" && len(open) > outside {
			// The decoder says only "unexpected EOF"; name what is open.
			e := open[len(open)-1]
			return nil, &Diagnostic{File: file, Pos: lines.pos(len(data) - shift),
				Msg: fmt.Sprintf("XML syntax error: unexpected end of file: <%s> (line %d) is not closed", e.name, e.pos.Line)}
		}
		if err != nil {
			return nil, syntaxDiagnostic(file, data, lines, dec, err, shift)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			p := lines.pos(max(off, 0))
			if err := checkDuplicateAttrs(t); err != "" {
				return nil, &Diagnostic{File: file, Pos: p, Element: t.Name.Local, Msg: err}
			}
			open = append(open, element{t.Name.Local, p})
			starts = append(starts, p)
		case xml.EndElement:
			open = open[:len(open)-1]
		case xml.CharData:
			// encoding/xml accepts text outside the root element; XML does
			// not, and it is usually a paste gone wrong.
			if len(open) == outside && len(bytes.Trim(t, xmlSpace)) > 0 {
				lead := len(t) - len(bytes.TrimLeft(t, xmlSpace))
				return nil, &Diagnostic{File: file, Pos: lines.pos(max(off, 0) + lead),
					Msg: "XML syntax error: text outside any element: remove it or make it a <!-- comment -->"}
			}
		}
	}
}

// xmlSpace is the white space of the XML grammar (production S).
const xmlSpace = " \t\r\n"

func checkDuplicateAttrs(t xml.StartElement) string {
	seen := make(map[string]bool, len(t.Attr))
	for _, a := range t.Attr {
		k := a.Name.Space + ":" + a.Name.Local
		if seen[k] {
			return fmt.Sprintf("attribute %s is written twice: keep one", a.Name.Local)
		}
		seen[k] = true
	}
	return ""
}

// syntaxDiagnostic positions an encoding/xml error. xml.SyntaxError has only
// a line number; the decoder's offset is where it stopped reading, which is
// the best column available.
func syntaxDiagnostic(file string, data []byte, lines lineIndex, dec *xml.Decoder, err error, shift int) error {
	off := min(max(int(dec.InputOffset())-shift, 0), len(data)-shift)
	p := lines.pos(off)
	msg := err.Error()
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		msg = se.Msg
		if se.Line != p.Line {
			p = Pos{Line: se.Line, Col: 1}
		}
	}
	return &Diagnostic{File: file, Pos: p, Msg: "XML syntax error: " + msg}
}

// lineIndex maps byte offsets to line and column.
type lineIndex struct {
	starts []int // byte offset of the first byte of each line
	data   []byte
}

func newLineIndex(data []byte) lineIndex {
	li := lineIndex{starts: []int{0}, data: data}
	for i, b := range data {
		if b == '\n' {
			li.starts = append(li.starts, i+1)
		}
	}
	return li
}

func (li lineIndex) pos(off int) Pos {
	lo, hi := 0, len(li.starts)-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if li.starts[mid] <= off {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	// Columns count characters, so that a UTF-8 comment before an element
	// does not shift what an editor shows.
	end := off
	if end > len(li.data) {
		end = len(li.data)
	}
	return Pos{Line: lo + 1, Col: utf8.RuneCount(li.data[li.starts[lo]:end]) + 1}
}

// charsetReader accepts the encodings that userconfig.xml and cluster.xml
// files declare in practice. Anything else is refused with a clear message
// rather than read as garbage.
func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	switch strings.ToLower(charset) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return input, nil
	case "iso-8859-1", "latin1", "latin-1", "iso8859-1", "windows-1252", "cp1252":
		b, err := io.ReadAll(input)
		if err != nil {
			return nil, err
		}
		r := make([]rune, len(b))
		for i, c := range b {
			r[i] = rune(c)
		}
		return strings.NewReader(string(r)), nil
	}
	return nil, fmt.Errorf("unsupported encoding %q: save the file as UTF-8", charset)
}

// elementText is the text of e with CDATA sections included.
func elementText(e *etree.Element) string {
	var b strings.Builder
	for _, t := range e.Child {
		if cd, ok := t.(*etree.CharData); ok {
			b.WriteString(cd.Data)
		}
	}
	return b.String()
}
