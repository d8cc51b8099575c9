package safe

import (
	"fmt"
	"net"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/beevik/etree"
)

// Options of a userconfig.xml check.
type Options struct {
	// File is the name shown in diagnostics. Default "userconfig.xml".
	File string
	// Cluster gives the lans and nodes that names refer to. Nil: they are
	// not checked (one warning says so).
	Cluster *Cluster
	// Env resolves %NAME% references that no <macro> defines. Nil: none.
	Env func(string) (string, bool)
	// Scripts are the file names in the module's bin/ directory, used to
	// check <custom exec> and to recognise Windows modules. Nil: unknown.
	Scripts []string
}

// Userconfig is a checked userconfig.xml.
type Userconfig struct {
	// Doc is the file as written.
	Doc *etree.Document
	// Expanded is Doc with every macro expanded: the content of safeconf.xml.
	Expanded *etree.Document
	// Config is the typed configuration. It is built even when there are
	// errors (invalid values take their defaults) so that tools can show it,
	// but it must not be applied then.
	Config *Config
	// Diags lists every problem, in file order.
	Diags Diagnostics
}

// ParseUserconfig reads and checks a whole userconfig.xml. It never panics
// and always returns a Userconfig; check Diags.HasErrors.
func ParseUserconfig(data []byte, opts Options) *Userconfig {
	return parseUserconfig(data, opts, false)
}

// ParseFragment checks a piece of userconfig.xml as found in the User's
// Guide: one or more elements (<rfs>, <check>, <replicated>...) without the
// enclosing document. Each top-level element is checked in its usual place;
// checks that need the whole module (mode, cluster names, mandatory
// sections) are skipped.
func ParseFragment(data []byte, opts Options) *Userconfig {
	return parseUserconfig(data, opts, true)
}

func parseUserconfig(data []byte, opts Options, fragment bool) *Userconfig {
	if opts.File == "" {
		opts.File = "userconfig.xml"
	}
	u := &Userconfig{Config: &Config{}}
	var doc *xmlDoc
	var err error
	if fragment {
		doc, err = parseFragmentXML(opts.File, data)
	} else {
		doc, err = parseXML(opts.File, data)
	}
	if err != nil {
		if d, ok := err.(*Diagnostic); ok {
			u.Diags = Diagnostics{*d}
		} else {
			u.Diags = Diagnostics{{File: opts.File, Msg: err.Error()}}
		}
		return u
	}
	u.Doc = doc.tree

	c := &checker{file: opts.File, rootSpec: userconfigSpec, opts: opts, fragment: fragment, cfg: u.Config,
		macroPos: map[string]Pos{}, resources: map[string]*etree.Element{}}
	c.expand(doc)
	u.Expanded = c.tree

	if fragment {
		c.checkFragment()
	} else {
		c.checkDocument()
	}
	u.Diags = c.diags.sorted()
	return u
}

// checker holds the state of one check: the expanded tree with the
// positions and raw values of the original, and the diagnostics so far.
type checker struct {
	file     string
	rootSpec *elemSpec // userconfigSpec or clusterSpec
	opts     Options
	fragment bool
	tree     *etree.Document
	roots    []*etree.Element
	pos      map[*etree.Element]Pos
	raw      map[*etree.Element]*etree.Element
	x        *Expander
	macroPos map[string]Pos
	cfg      *Config
	diags    Diagnostics

	// syntax72 and syntax71 remember the first element written in each
	// syntax, to refuse a file that mixes them.
	syntax72, syntax71 *etree.Element
	// windowsWhy explains why the module is a Windows one.
	windowsWhy string
	windowsEl  *etree.Element
	// resources maps checker resources (custom.x) to the element that set
	// them, to refuse duplicates.
	resources map[string]*etree.Element
}

// report records a problem of element e, or of its attribute attr when
// attr is not empty.
func (c *checker) report(e *etree.Element, attr string, sev Severity, format string, args ...any) {
	d := Diagnostic{File: c.file, Severity: sev, Msg: fmt.Sprintf(format, args...)}
	if e != nil {
		d.Pos = c.pos[e]
		d.Element = e.Tag
		d.Attr = attr
	}
	c.diags = append(c.diags, d)
}

func (c *checker) errorf(e *etree.Element, format string, args ...any) {
	c.report(e, "", Error, format, args...)
}

func (c *checker) warnf(e *etree.Element, format string, args ...any) {
	c.report(e, "", Warning, format, args...)
}

// attrErrorf and attrWarnf report a problem of one attribute of e.
func (c *checker) attrErrorf(e *etree.Element, attr, format string, args ...any) {
	c.report(e, attr, Error, format, args...)
}

func (c *checker) attrWarnf(e *etree.Element, attr, format string, args ...any) {
	c.report(e, attr, Warning, format, args...)
}

// expand copies the tree and expands macros in every attribute value and
// text. Macros are the <macro> children of the root <safe> (or, in a
// fragment, any top-level <macro>).
func (c *checker) expand(doc *xmlDoc) {
	macros := map[string]string{}
	var macroEls []*etree.Element
	for _, r := range doc.roots {
		switch r.Tag {
		case "macro":
			macroEls = append(macroEls, r)
		case "safe":
			macroEls = append(macroEls, r.SelectElements("macro")...)
		}
	}
	c.pos = make(map[*etree.Element]Pos, len(doc.pos))
	c.raw = make(map[*etree.Element]*etree.Element, len(doc.pos))
	for _, m := range macroEls {
		name := m.SelectAttrValue("name", "")
		if name == "" {
			continue // reported by the schema check
		}
		if p, dup := c.macroPos[name]; dup {
			d := Diagnostic{File: c.file, Pos: doc.pos[m], Element: "macro", Attr: "name",
				Msg: fmt.Sprintf("macro %s is defined twice (first at line %d): keep one", name, p.Line)}
			c.diags = append(c.diags, d)
			continue
		}
		c.macroPos[name] = doc.pos[m]
		macros[name] = m.SelectAttrValue("value", "")
	}
	c.x = NewExpander(macros, c.opts.Env)

	c.tree = doc.tree.Copy()
	var walk func(orig, cp *etree.Element)
	walk = func(orig, cp *etree.Element) {
		c.pos[cp] = doc.pos[orig]
		c.raw[cp] = orig
		for i := range cp.Attr {
			v, err := c.x.Expand(cp.Attr[i].Value)
			if err != nil {
				c.attrErrorf(cp, cp.Attr[i].Key, "%s", err)
				continue
			}
			cp.Attr[i].Value = v
		}
		for _, t := range cp.Child {
			if cd, ok := t.(*etree.CharData); ok && strings.Contains(cd.Data, "%") {
				if v, err := c.x.Expand(cd.Data); err == nil {
					cd.SetData(v)
				} else {
					c.errorf(cp, "%s", err)
				}
			}
		}
		oc, cc := orig.ChildElements(), cp.ChildElements()
		for i := range cc {
			walk(oc[i], cc[i])
		}
	}
	oroots := doc.tree.ChildElements()
	for i, r := range c.tree.ChildElements() {
		walk(oroots[i], r)
		c.roots = append(c.roots, r)
	}
	for _, n := range c.x.Undefined() {
		// The element is left out of the text, as it always was; the
		// attribute, which the text does not show, is given.
		pos, attr := c.firstUse(doc, n)
		c.diags = append(c.diags, Diagnostic{File: c.file, Severity: Warning, Pos: pos, Attr: attr,
			Msg: fmt.Sprintf("%%%s%% is neither a <macro> nor an environment variable: it is left as written", n)})
	}
}

// firstUse returns the position of the first element that refers to
// %name%, and the attribute that does (empty when its text does).
func (c *checker) firstUse(doc *xmlDoc, name string) (Pos, string) {
	ref := "%" + name + "%"
	var found Pos
	var attr string
	var walk func(e *etree.Element) bool
	walk = func(e *etree.Element) bool {
		for _, a := range e.Attr {
			if strings.Contains(a.Value, ref) {
				found, attr = doc.pos[e], a.Key
				return true
			}
		}
		if strings.Contains(elementText(e), ref) {
			found = doc.pos[e]
			return true
		}
		for _, ch := range e.ChildElements() {
			if walk(ch) {
				return true
			}
		}
		return false
	}
	for _, r := range doc.roots {
		if walk(r) {
			break
		}
	}
	return found, attr
}

// checkDocument checks a whole userconfig.xml.
func (c *checker) checkDocument() {
	var root *etree.Element
	hasSafe := slices.ContainsFunc(c.roots, func(r *etree.Element) bool { return r.Tag == "safe" })
	for _, r := range c.roots {
		switch {
		case root == nil && r.Tag == "safe":
			root = r
		case r.Tag == "safe":
			c.errorf(r, "a second <safe>: a userconfig.xml has exactly one <safe> root element")
		case hasSafe: // without <safe>, the error below says it all
			where := "inside <safe>"
			if r.Tag == "macro" {
				where = "inside <safe>, before <service>"
			}
			c.errorf(r, "<%s> is outside <safe>: an XML document has a single root element; move it %s", r.Tag, where)
		}
	}
	if root == nil {
		if len(c.roots) == 0 {
			c.diags = append(c.diags, Diagnostic{File: c.file, Pos: Pos{1, 1}, Msg: "empty document: a userconfig.xml starts with <safe>"})
		} else {
			c.errorf(c.roots[0], "the root element must be <safe>, not <%s>", c.roots[0].Tag)
		}
		return
	}
	c.validate(root, userconfigSpec)
	services := root.SelectElements("service")
	if len(services) == 0 {
		c.errorf(root, "missing <service mode=\"...\">: every module has one")
		return
	}
	c.cfg.Macros = c.macros(root.SelectElements("macro"))
	c.buildService(services[0], false)
	c.checkWholeModule(services[0])
}

// checkFragment checks each top-level element of a fragment in its usual
// parent.
func (c *checker) checkFragment() {
	if len(c.roots) == 0 {
		c.diags = append(c.diags, Diagnostic{File: c.file, Pos: Pos{1, 1}, Msg: "empty fragment"})
		return
	}
	for _, r := range c.roots {
		parent := findParentSpec(userconfigSpec, r.Tag)
		if r.Tag == "safe" {
			c.validate(r, userconfigSpec)
			c.cfg.Macros = c.macros(r.SelectElements("macro"))
			if s := r.SelectElement("service"); s != nil {
				c.buildService(s, true)
			}
			continue
		}
		if parent == nil {
			c.warnf(r, "unknown element <%s> is ignored", r.Tag)
			continue
		}
		spec := parent.child(r.Tag)
		c.validate(r, spec)
		c.buildSection(r, spec, parent.tag)
	}
}

// findParentSpec returns the spec whose children include tag, searching
// breadth first so that the usual place wins (<lan> of <farm> over deeper
// ones).
func findParentSpec(root *elemSpec, tag string) *elemSpec {
	queue := []*elemSpec{root}
	seen := map[*elemSpec]bool{}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		if seen[s] {
			continue
		}
		seen[s] = true
		if s.child(tag) != nil {
			return s
		}
		queue = append(queue, s.children...)
	}
	return nil
}

// knownParents lists where a tag may appear, for the message about a known
// element in the wrong place.
func knownParents(root *elemSpec, tag string) []string {
	var out []string
	seen := map[*elemSpec]bool{}
	var walk func(s *elemSpec)
	walk = func(s *elemSpec) {
		if seen[s] {
			return
		}
		seen[s] = true
		for _, ch := range s.children {
			if ch.tag == tag {
				out = append(out, "<"+s.tag+">")
			}
			walk(ch)
		}
	}
	walk(root)
	sort.Strings(out)
	return dedup(out)
}

func dedup(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// validate applies the schema to e and its descendants: unknown names,
// attribute values, required attributes, repeated sections.
func (c *checker) validate(e *etree.Element, spec *elemSpec) {
	for _, a := range e.Attr {
		if a.Space == "xmlns" || (a.Space == "" && a.Key == "xmlns") {
			continue
		}
		as := spec.attr(a.Key)
		if as == nil || a.Space != "" {
			c.attrWarnf(e, a.FullKey(), "unknown attribute %s is ignored%s", a.FullKey(), c.knownAttrs(spec))
			continue
		}
		if as.obsolete != "" {
			c.attrWarnf(e, a.Key, "attribute %s is %s and is ignored", a.Key, as.obsolete)
			continue
		}
		c.checkValue(e, as, a.Value)
	}
	for _, as := range spec.attrs {
		if as.required && e.SelectAttr(as.name) == nil {
			c.attrErrorf(e, as.name, "missing attribute %s%s", as.name, requiredHint(e.Tag, as))
		}
	}
	if spec.tag != "failover" {
		for _, t := range e.Child {
			if cd, ok := t.(*etree.CharData); ok && !cd.IsWhitespace() && strings.TrimSpace(cd.Data) != "…" {
				c.warnf(e, "text %q inside <%s> is ignored: values go in attributes", strings.TrimSpace(cd.Data), e.Tag)
				break
			}
		}
	}
	first := map[string]*etree.Element{}
	for _, ch := range e.ChildElements() {
		cs := spec.child(ch.Tag)
		if cs == nil || ch.Space != "" {
			if parents := knownParents(c.rootSpec, ch.Tag); len(parents) > 0 && ch.Space == "" {
				c.errorf(ch, "<%s> is not allowed inside <%s>: it belongs in %s%s", ch.Tag, e.Tag, strings.Join(parents, " or "), misplacedHint(e.Tag, ch.Tag))
			} else {
				c.warnf(ch, "unknown element <%s> inside <%s> is ignored", ch.FullTag(), e.Tag)
			}
			continue
		}
		if f, dup := first[ch.Tag]; dup && !cs.many {
			c.errorf(ch, "only one <%s> is allowed in <%s> (first at line %d): merge them", ch.Tag, e.Tag, c.pos[f].Line)
			continue
		}
		if _, dup := first[ch.Tag]; !dup {
			first[ch.Tag] = ch
		}
		c.validate(ch, cs)
	}
}

func misplacedHint(parent, child string) string {
	if parent == child {
		return fmt.Sprintf("; remove the inner <%s> and keep its content in the outer one", child)
	}
	return ""
}

func (c *checker) knownAttrs(spec *elemSpec) string {
	if len(spec.attrs) == 0 {
		return fmt.Sprintf(" (<%s> has no attributes)", spec.tag)
	}
	names := make([]string, 0, len(spec.attrs))
	for _, a := range spec.attrs {
		if a.obsolete == "" {
			names = append(names, a.name)
		}
	}
	return " (known: " + strings.Join(names, ", ") + ")"
}

func requiredHint(tag string, as attrSpec) string {
	switch {
	case tag == "service" && as.name == "mode":
		return `: set mode="mirror", mode="farm" or mode="light"`
	case as.kind == kEnum:
		return ": set it to " + orList(as.enum)
	}
	return ""
}

func orList(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = strconv.Quote(v)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// checkValue checks one attribute value against its spec.
func (c *checker) checkValue(e *etree.Element, as *attrSpec, v string) {
	if c.isPlaceholder(e, as.name, v) {
		if !as.emptyOK {
			c.attrErrorf(e, as.name, "%s", c.emptyMsg(e, as.name))
		}
		return
	}
	var msg string
	switch as.kind {
	case kEnum:
		if !contains(as.enum, v) {
			msg = fmt.Sprintf("unknown value %q for the attribute %s (expected %s)", v, as.name, orList(as.enum))
		}
	case kOnOff:
		if v != "on" && v != "off" {
			msg = fmt.Sprintf("unknown value %q for the attribute %s (expected \"on\" or \"off\")", v, as.name)
		}
	case kYesNo:
		if v != "yes" && v != "no" {
			msg = fmt.Sprintf("unknown value %q for the attribute %s (expected \"yes\" or \"no\")", v, as.name)
		}
	case kInt:
		n, err := strconv.Atoi(v)
		switch {
		case err != nil:
			msg = fmt.Sprintf("invalid value '%s' for the attribute %s (expected a whole number)", v, as.name)
		case n < as.min:
			msg = fmt.Sprintf("invalid value '%s' for the attribute %s (the minimum is %d)", v, as.name, as.min)
		}
	case kTime:
		if _, err := parseTime(as.name, v, as.unit); err != nil {
			msg = err.Error()
		}
	case kPort:
		if contains(as.enum, v) {
			break
		}
		if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 65535 {
			msg = fmt.Sprintf("invalid value '%s' for the attribute %s (expected a port number from 1 to 65535", v, as.name)
			if len(as.enum) > 0 {
				msg += " or " + orList(as.enum)
			}
			msg += ")"
		}
	case kAddr:
		if !validAddr(v) {
			msg = fmt.Sprintf("invalid value '%s' for the attribute %s (expected an IPv4 address, an IPv6 address or a host name)", v, as.name)
		}
	case kRelPath:
		if isAbsPath(v) {
			msg = fmt.Sprintf("%s %q must be relative to the replicated directory: remove the leading part, e.g. %q", as.name, v, relSuggestion(e, v))
		} else if escapes(v) {
			msg = fmt.Sprintf("%s %q leaves the replicated directory (..): write a path inside it", as.name, v)
		}
	}
	if msg != "" {
		c.attrErrorf(e, as.name, "%s%s", msg, c.undefinedHint(e, as.name))
	}
}

// isPlaceholder tells whether an attribute value is one the module ships
// for the operator to fill: empty, or made only of empty macros and
// separators ("%VM_PATH%\\%VM_NAME%" with both macros empty).
func (c *checker) isPlaceholder(e *etree.Element, attr, v string) bool {
	if strings.TrimSpace(v) == "" {
		return true
	}
	if strings.Trim(v, ` /\:,;`) != "" {
		return false
	}
	r := c.raw[e]
	return r != nil && len(c.x.emptyMacros(r.SelectAttrValue(attr, ""))) > 0
}

// emptyMsg explains an attribute shipped empty: which macro or attribute the
// operator must fill.
func (c *checker) emptyMsg(e *etree.Element, attr string) string {
	raw := ""
	if r := c.raw[e]; r != nil {
		raw = r.SelectAttrValue(attr, "")
	}
	if names := c.x.emptyMacros(raw); len(names) > 0 {
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = fmt.Sprintf("macro %s (line %d)", n, c.macroPos[n].Line)
		}
		return fmt.Sprintf("%s is empty: set a value for %s", attr, strings.Join(parts, " and "))
	}
	msg := fmt.Sprintf("%s is empty: fill in the %s attribute", attr, attr)
	if c.rootSpec == userconfigSpec {
		// cluster.xml is written by the administrator, not shipped.
		msg += " (the module ships it empty for you to set)"
	}
	return msg
}

// undefinedHint names the undefined macros used by an attribute, which are
// the usual reason for an invalid value.
func (c *checker) undefinedHint(e *etree.Element, attr string) string {
	r := c.raw[e]
	if r == nil {
		return ""
	}
	var names []string
	for _, ref := range findMacroRefs(r.SelectAttrValue(attr, "")) {
		if c.x.undefined[ref.Name] {
			names = append(names, ref.Name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return fmt.Sprintf(" (%%%s%% is not defined: add <macro name=\"%s\" value=\"...\"/>)", names[0], names[0])
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$`)

// validAddr accepts IPv4, IPv6 (bare or in brackets) and DNS names.
func validAddr(v string) bool {
	if strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]") {
		ip := net.ParseIP(v[1 : len(v)-1])
		return ip != nil && ip.To4() == nil
	}
	if net.ParseIP(v) != nil {
		return true
	}
	if len(v) > 253 {
		return false
	}
	// All-numeric dotted strings that are not IPv4 addresses are typos.
	if strings.Trim(v, "0123456789.") == "" {
		return false
	}
	return hostnameRE.MatchString(v)
}

var drivePathRE = regexp.MustCompile(`^[A-Za-z]:[\\/]`)

func isWindowsPath(p string) bool {
	return drivePathRE.MatchString(p) || strings.HasPrefix(p, `\\`)
}

func isAbsPath(p string) bool { return strings.HasPrefix(p, "/") || isWindowsPath(p) }

func escapes(rel string) bool {
	clean := path.Clean(strings.ReplaceAll(rel, `\`, "/"))
	return clean == ".." || strings.HasPrefix(clean, "../")
}

func relSuggestion(e *etree.Element, abs string) string {
	if p := e.Parent(); p != nil && p.Tag == "replicated" {
		dir := strings.TrimRight(p.SelectAttrValue("dir", ""), `/\`)
		if dir != "" && strings.HasPrefix(abs, dir) {
			if r := strings.TrimLeft(abs[len(dir):], `/\`); r != "" {
				return r
			}
		}
	}
	return strings.TrimLeft(abs, `/\`)
}

func (c *checker) macros(els []*etree.Element) []Var {
	var out []Var
	for _, m := range els {
		out = append(out, Var{Name: m.SelectAttrValue("name", ""), Value: m.SelectAttrValue("value", "")})
	}
	return out
}

// markWindows records that the module is a Windows one.
func (c *checker) markWindows(e *etree.Element, why string) {
	c.cfg.Windows = true
	if c.windowsWhy == "" {
		c.windowsWhy, c.windowsEl = why, e
	}
}

// syntax records which heartbeat/flow/lan syntax an element uses.
func (c *checker) syntax(e *etree.Element, legacy bool) {
	if legacy {
		if c.syntax71 == nil {
			c.syntax71 = e
		}
	} else if c.syntax72 == nil {
		c.syntax72 = e
	}
}
