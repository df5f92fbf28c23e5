package engine

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ParamKind is the value type of a step parameter as users see it.
type ParamKind string

const (
	KindString     ParamKind = "string"
	KindBool       ParamKind = "boolean"
	KindInt        ParamKind = "integer"
	KindFloat      ParamKind = "number"
	KindDuration   ParamKind = "duration"
	KindSize       ParamKind = "size"
	KindStringList ParamKind = "list of strings"
	KindStringMap  ParamKind = "map of strings"
	KindObject     ParamKind = "object"

	// Kinds of the plan format only (see format.go), not of step params.
	KindExpr       ParamKind = "boolean expression"
	KindExprList   ParamKind = "list of boolean expressions"
	KindMapping    ParamKind = "mapping"
	KindMappingMap ParamKind = "map of mappings"
	KindObjectList ParamKind = "list"
)

// Param is one parameter of a step type, derived from a struct field and
// its tags: yaml (the key), doc, required, default, enum ("a|b|c"), secret,
// min and max (bounds of a number, or the fewest and most entries of a
// list) and pattern (a regexp a string, or each key of a mapping, must
// match).
type Param struct {
	Name     string
	Doc      string
	Kind     ParamKind
	Required bool
	Default  string
	Enum     []string
	Secret   bool
	// SecretFile (tag secret:"file") says the value names a file holding a
	// secret (a password file, an age identity, a tool config with
	// credentials): preflight checks that nobody else can read it.
	SecretFile bool
	// Tool says the value names a program the step runs: validate
	// --strict looks it up as apply will.
	Tool     bool
	Min, Max *float64
	Pattern  *regexp.Regexp
	Fields   *Spec // for KindObject and KindObjectList

	index []int
}

// Spec is the parameter list of a step type (or of a nested object).
type Spec struct {
	Params []*Param
	goType reflect.Type
}

// Lookup finds a param by key.
func (s *Spec) Lookup(name string) *Param {
	for _, p := range s.Params {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Names lists the param keys in declaration order.
func (s *Spec) Names() []string {
	out := make([]string, len(s.Params))
	for i, p := range s.Params {
		out[i] = p.Name
	}
	return out
}

// Duration is a time.Duration that also accepts days and weeks ("30d", "2w").
type Duration time.Duration

// Size is a byte count that accepts units ("64MiB", "10GB", "512k").
type Size int64

var (
	durationType = reflect.TypeOf(Duration(0))
	sizeType     = reflect.TypeOf(Size(0))
)

// ParseDuration parses Go durations plus the d (24h) and w (7d) units.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	// Expand d and w, which Go lacks, into hours.
	var total time.Duration
	rest := s
	for {
		i := strings.IndexAny(rest, "dw")
		if i < 0 {
			break
		}
		j := i - 1
		for j >= 0 && (rest[j] >= '0' && rest[j] <= '9' || rest[j] == '.') {
			j--
		}
		num := rest[j+1 : i]
		if num == "" || j >= 0 {
			// a unit letter not preceded by a leading number: let Go report it
			break
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		unit := 24 * time.Hour
		if rest[i] == 'w' {
			unit *= 7
		}
		total += time.Duration(f * float64(unit))
		rest = rest[i+1:]
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q (use e.g. 90s, 30m, 2h, 7d)", s)
		}
		total += d
	}
	return total, nil
}

// ParseSize parses a byte size with an optional unit (k, M, G, T, with or
// without i/B; binary for KiB..TiB and k/M/G shorthands, decimal for KB..TB).
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.TrimSpace(s[i:])
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" {
		return 0, fmt.Errorf("invalid size %q (use e.g. 500MiB, 10GB)", s)
	}
	mult := map[string]float64{
		"": 1, "b": 1, "B": 1,
		"k": 1 << 10, "K": 1 << 10, "KiB": 1 << 10, "KB": 1e3, "kB": 1e3,
		"m": 1 << 20, "M": 1 << 20, "MiB": 1 << 20, "MB": 1e6,
		"g": 1 << 30, "G": 1 << 30, "GiB": 1 << 30, "GB": 1e9,
		"t": 1 << 40, "T": 1 << 40, "TiB": 1 << 40, "TB": 1e12,
	}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("invalid size unit %q in %q", unit, s)
	}
	return int64(f * mult), nil
}

// SpecOf derives the params spec from a struct type (or pointer to one).
func SpecOf(t reflect.Type) (*Spec, error) { return specOf(t, nil) }

// specOf derives a spec; format (non-nil for the plan format) allows the
// format's own kinds and shares one Spec per struct type, so that a type
// used twice (retry) is one declaration.
func specOf(t reflect.Type, format map[reflect.Type]*Spec) (*Spec, error) {
	if t == nil {
		return &Spec{}, nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("params must be a struct, not %s", t)
	}
	if s := format[t]; s != nil {
		return s, nil
	}
	s := &Spec{goType: t}
	if format != nil {
		format[t] = s
	}
	if err := s.addFields(t, nil, format); err != nil {
		return nil, err
	}
	return s, nil
}

// Same reports whether s and o declare the same struct type.
func (s *Spec) Same(o *Spec) bool { return s != nil && o != nil && s.goType == o.goType }

func (s *Spec) addFields(t reflect.Type, prefix []int, format map[reflect.Type]*Spec) error {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		index := append(append([]int(nil), prefix...), i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if f.Anonymous || opts == "inline" {
			ft := f.Type
			if ft.Kind() != reflect.Struct {
				return fmt.Errorf("field %s: inline fields must be structs", f.Name)
			}
			if err := s.addFields(ft, index, format); err != nil {
				return err
			}
			continue
		}
		if name == "" {
			return fmt.Errorf("field %s has no yaml tag", f.Name)
		}
		p := &Param{
			Name:       name,
			Doc:        f.Tag.Get("doc"),
			Required:   f.Tag.Get("required") == "true",
			Default:    f.Tag.Get("default"),
			Secret:     f.Tag.Get("secret") == "true",
			SecretFile: f.Tag.Get("secret") == "file",
			Tool:       f.Tag.Get("tool") == "true",
			index:      index,
		}
		if v := f.Tag.Get("secret"); v != "" && v != "true" && v != "file" {
			return fmt.Errorf("field %s: secret tag must be \"true\" or \"file\", got %q", f.Name, v)
		}
		if p.Tool && f.Type.Kind() != reflect.String {
			return fmt.Errorf("field %s: only a string can name a tool", f.Name)
		}
		if e := f.Tag.Get("enum"); e != "" {
			p.Enum = strings.Split(e, "|")
		}
		for tag, dst := range map[string]**float64{"min": &p.Min, "max": &p.Max} {
			if v := f.Tag.Get(tag); v != "" {
				n, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return fmt.Errorf("field %s: bad %s tag %q", f.Name, tag, v)
				}
				*dst = &n
			}
		}
		if v := f.Tag.Get("pattern"); v != "" {
			re, err := regexp.Compile(v)
			if err != nil {
				return fmt.Errorf("field %s: bad pattern: %w", f.Name, err)
			}
			p.Pattern = re
		}
		kind, sub, err := kindOf(f.Type, format)
		if err != nil {
			return fmt.Errorf("field %s: %w", f.Name, err)
		}
		p.Kind, p.Fields = kind, sub
		if s.Lookup(name) != nil {
			return fmt.Errorf("duplicate param %q", name)
		}
		if p.Default != "" {
			if _, err := parseScalar(p, p.Default); err != nil {
				return fmt.Errorf("field %s: bad default: %w", f.Name, err)
			}
		}
		s.Params = append(s.Params, p)
	}
	return nil
}

func kindOf(t reflect.Type, format map[reflect.Type]*Spec) (ParamKind, *Spec, error) {
	switch {
	case t == durationType:
		return KindDuration, nil, nil
	case t == sizeType:
		return KindSize, nil, nil
	}
	if format != nil {
		switch {
		case t == exprType:
			return KindExpr, nil, nil
		case t == reflect.SliceOf(exprType):
			return KindExprList, nil, nil
		case t == nodeType:
			return KindMapping, nil, nil
		case t == reflect.MapOf(reflect.TypeOf(""), nodeType):
			return KindMappingMap, nil, nil
		case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
			sub, err := specOf(t.Elem(), format)
			return KindObjectList, sub, err
		}
	}
	switch t.Kind() {
	case reflect.String:
		return KindString, nil, nil
	case reflect.Bool:
		return KindBool, nil, nil
	case reflect.Int, reflect.Int64, reflect.Int32:
		return KindInt, nil, nil
	case reflect.Float64:
		return KindFloat, nil, nil
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return KindStringList, nil, nil
		}
	case reflect.Map:
		if t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.String {
			return KindStringMap, nil, nil
		}
	case reflect.Pointer:
		if t.Elem().Kind() == reflect.Struct {
			sub, err := specOf(t.Elem(), format)
			return KindObject, sub, err
		}
	case reflect.Struct:
		sub, err := specOf(t, format)
		return KindObject, sub, err
	}
	return "", nil, fmt.Errorf("unsupported param type %s", t)
}

// parseScalar converts a scalar's text to the param's Go value.
func parseScalar(p *Param, text string) (any, error) {
	switch p.Kind {
	case KindString:
		return text, nil
	case KindBool:
		switch strings.ToLower(text) {
		case "true", "yes", "on":
			return true, nil
		case "false", "no", "off":
			return false, nil
		}
		return nil, fmt.Errorf("expected a boolean (true/false), got %q", text)
	case KindInt:
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("expected an integer, got %q", text)
		}
		return n, nil
	case KindFloat:
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return nil, fmt.Errorf("expected a number, got %q", text)
		}
		return f, nil
	case KindDuration:
		d, err := ParseDuration(text)
		return Duration(d), err
	case KindSize:
		n, err := ParseSize(text)
		return Size(n), err
	}
	return nil, fmt.Errorf("expected %s, got a single value %q", p.Kind, text)
}

// hasExpr reports whether text contains a ${{ }} interpolation.
func hasExpr(text string) bool { return strings.Contains(text, "${{") }

// Decode fills a new params value from a `with:` mapping node. With
// deferExprs set (validation), scalars holding ${{ }} are not type-checked:
// string params get the raw text so required/exclusive checks still see
// them, other params stay zero. It returns every problem found.
func (s *Spec) Decode(node *yaml.Node, dst reflect.Value, deferExprs bool) []Problem {
	var probs []Problem
	seen := map[string]bool{}
	if node != nil && node.Kind != 0 && !(node.Kind == yaml.ScalarNode && node.Tag == "!!null") {
		if node.Kind != yaml.MappingNode {
			return []Problem{{Line: node.Line, Col: node.Column, Msg: "expected a mapping of params"}}
		}
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			p := s.Lookup(k.Value)
			if p == nil {
				msg := fmt.Sprintf("unknown param %q", k.Value)
				if hint := Suggest(k.Value, s.Names()); hint != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", hint)
				}
				probs = append(probs, Problem{Line: k.Line, Col: k.Column, Msg: msg})
				continue
			}
			if seen[p.Name] {
				probs = append(probs, Problem{Line: k.Line, Col: k.Column, Msg: fmt.Sprintf("param %q given twice", p.Name)})
				continue
			}
			seen[p.Name] = true
			for _, pr := range s.decodeParam(p, v, fieldByIndex(dst, p.index), deferExprs) {
				if !strings.HasPrefix(pr.Msg, "param ") {
					pr.Msg = fmt.Sprintf("param %q: %s", p.Name, pr.Msg)
				}
				probs = append(probs, pr)
			}
		}
	}
	line, col := 0, 0
	if node != nil {
		line, col = node.Line, node.Column
	}
	for _, p := range s.Params {
		if seen[p.Name] {
			continue
		}
		if p.Required {
			probs = append(probs, Problem{Line: line, Col: col, Msg: fmt.Sprintf("missing required param %q", p.Name)})
			continue
		}
		if p.Default != "" {
			v, _ := parseScalar(p, p.Default)
			setValue(fieldByIndex(dst, p.index), v)
		}
	}
	return probs
}

// fieldByIndex walks to a (possibly inline) field, allocating nil pointers.
func fieldByIndex(v reflect.Value, index []int) reflect.Value {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	for _, i := range index {
		v = v.Field(i)
	}
	return v
}

func (s *Spec) decodeParam(p *Param, v *yaml.Node, field reflect.Value, deferExprs bool) []Problem {
	at := func(n *yaml.Node, format string, args ...any) []Problem {
		return []Problem{{Line: n.Line, Col: n.Column, Msg: fmt.Sprintf(format, args...)}}
	}
	if v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	if v.Kind == yaml.ScalarNode && hasExpr(v.Value) {
		if deferExprs {
			// Keep presence visible to Validate: strings hold the raw
			// text, lists one raw element; other kinds stay zero.
			switch p.Kind {
			case KindString:
				field.SetString(v.Value)
			case KindStringList:
				field.Set(reflect.ValueOf([]string{v.Value}).Convert(field.Type()))
			}
			return nil
		}
	}
	switch p.Kind {
	case KindStringList:
		if v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
			// A single string is accepted as a one-element list.
			field.Set(reflect.ValueOf([]string{v.Value}).Convert(field.Type()))
			return nil
		}
		if v.Kind != yaml.SequenceNode {
			return at(v, "expected a list of strings")
		}
		out := make([]string, 0, len(v.Content))
		for _, e := range v.Content {
			if e.Kind != yaml.ScalarNode {
				return at(e, "expected a string list element")
			}
			out = append(out, e.Value)
		}
		if msg := p.bounds(float64(len(out)), " entries", fmt.Sprintf("got %d", len(out))); msg != "" {
			return at(v, "%s", msg)
		}
		field.Set(reflect.ValueOf(out).Convert(field.Type()))
		return nil
	case KindStringMap:
		if v.Kind != yaml.MappingNode {
			return at(v, "expected a mapping of strings")
		}
		m := reflect.MakeMapWithSize(field.Type(), len(v.Content)/2)
		for i := 0; i+1 < len(v.Content); i += 2 {
			if v.Content[i+1].Kind != yaml.ScalarNode {
				return at(v.Content[i+1], "expected a string value for %q", v.Content[i].Value)
			}
			m.SetMapIndex(reflect.ValueOf(v.Content[i].Value), reflect.ValueOf(v.Content[i+1].Value))
		}
		field.Set(m)
		return nil
	case KindObject:
		if v.Kind != yaml.MappingNode {
			return at(v, "expected a mapping with keys %s", strings.Join(p.Fields.Names(), ", "))
		}
		if field.Kind() == reflect.Pointer {
			field.Set(reflect.New(field.Type().Elem()))
			field = field.Elem()
		}
		probs := p.Fields.Decode(v, field, deferExprs)
		for i := range probs {
			probs[i].Msg = fmt.Sprintf("%s.%s", p.Name, strings.TrimPrefix(probs[i].Msg, "param "))
			probs[i].Msg = "param " + probs[i].Msg
		}
		return probs
	}
	if v.Kind != yaml.ScalarNode {
		return at(v, "expected %s", p.Kind)
	}
	if v.Tag == "!!null" {
		return nil
	}
	if p.Kind == KindString && v.Tag != "!!str" && v.Style == 0 && (v.Tag == "!!map" || v.Tag == "!!seq") {
		return at(v, "expected a string")
	}
	val, err := parseScalar(p, v.Value)
	if err != nil {
		return at(v, "%v", err)
	}
	if msg := p.check(v.Value, val); msg != "" {
		return at(v, "%s", msg)
	}
	setValue(field, val)
	return nil
}

// check applies the enum, min/max and pattern tags to a scalar (text as
// written, val as parsed); it returns what is wrong, or "".
func (p *Param) check(text string, val any) string {
	if len(p.Enum) > 0 && !contains(p.Enum, text) {
		msg := fmt.Sprintf("must be one of %s, got %q", strings.Join(p.Enum, ", "), text)
		if len(p.Enum) == 1 {
			msg = fmt.Sprintf("must be %s, got %q", p.Enum[0], text)
		}
		if hint := Suggest(text, p.Enum); hint != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", hint)
		}
		return msg
	}
	if n, ok := number(val); ok {
		if msg := p.bounds(n, "", "got "+text); msg != "" {
			return msg
		}
	}
	if s, ok := val.(string); ok && p.Pattern != nil && !p.Pattern.MatchString(s) {
		return fmt.Sprintf("%q does not match %s", s, p.Pattern)
	}
	return ""
}

// bounds checks n against min and max; unit names what n counts ("" for
// a plain number).
func (p *Param) bounds(n float64, unit, got string) string {
	lo, hi := p.Min != nil && n < *p.Min, p.Max != nil && n > *p.Max
	if !lo && !hi {
		return ""
	}
	switch {
	case p.Min != nil && p.Max != nil:
		return fmt.Sprintf("must be %v..%v%s, %s", *p.Min, *p.Max, unit, got)
	case lo:
		return fmt.Sprintf("must be at least %v%s, %s", *p.Min, unit, got)
	}
	return fmt.Sprintf("must be at most %v%s, %s", *p.Max, unit, got)
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

func setValue(field reflect.Value, v any) {
	rv := reflect.ValueOf(v)
	if field.Kind() == reflect.Pointer {
		field.Set(reflect.New(field.Type().Elem()))
		field = field.Elem()
	}
	if rv.Type().ConvertibleTo(field.Type()) {
		field.Set(rv.Convert(field.Type()))
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ToolValues lists the programs the params tagged tool name in v, in
// declaration order; an unset one is its default.
func (s *Spec) ToolValues(v reflect.Value) []string {
	var out []string
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return s.ToolDefaults()
		}
		v = v.Elem()
	}
	for _, p := range s.Params {
		if p.Tool {
			name := v.FieldByIndex(p.index).String()
			if name == "" {
				name = p.Default
			}
			out = append(out, name)
		}
	}
	return out
}

// ToolDefaults lists the defaults of the params tagged tool.
func (s *Spec) ToolDefaults() []string {
	var out []string
	for _, p := range s.Params {
		if p.Tool && p.Default != "" {
			out = append(out, p.Default)
		}
	}
	return out
}

// SecretFileValues returns the non-empty values of params tagged
// secret:"file" (down into nested objects).
func (s *Spec) SecretFileValues(v reflect.Value) []string {
	var out []string
	s.eachValue(v, func(p *Param, f reflect.Value) {
		if p.SecretFile && f.Kind() == reflect.String && f.String() != "" {
			out = append(out, f.String())
		}
	})
	return out
}

// SecretValues returns the non-empty values of params tagged secret.
func (s *Spec) SecretValues(v reflect.Value) []string {
	var out []string
	s.eachValue(v, func(p *Param, f reflect.Value) {
		if !p.Secret {
			return
		}
		switch f.Kind() {
		case reflect.String:
			if f.String() != "" {
				out = append(out, f.String())
			}
		case reflect.Slice:
			for i := 0; i < f.Len(); i++ {
				out = append(out, f.Index(i).String())
			}
		case reflect.Map:
			for _, k := range f.MapKeys() {
				out = append(out, f.MapIndex(k).String())
			}
		}
	})
	return out
}

// eachValue calls fn with each param of s and its field in v, down into
// nested objects (a nil pointer has none).
func (s *Spec) eachValue(v reflect.Value, fn func(p *Param, f reflect.Value)) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	for _, p := range s.Params {
		f := v.FieldByIndex(p.index)
		if p.Kind == KindObject {
			p.Fields.eachValue(f, fn)
			continue
		}
		fn(p, f)
	}
}
