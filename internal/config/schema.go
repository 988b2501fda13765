package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
)

// sep joins key segments, as in CONCELIER__MIRROR__ENABLED.
const sep = "__"

// indexPlaceholder stands for a slice index in Keys.
const indexPlaceholder = "{n}"

var (
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	durationType        = reflect.TypeFor[time.Duration]()
)

type shape int

const (
	shapeLeaf   shape = iota + 1 // a value: string, bool, number, duration, text
	shapeStruct                  // a section with named fields
	shapeSlice                   // an indexed list
)

type leafKind int

const (
	leafString leafKind = iota + 1
	leafBool
	leafInt
	leafUint
	leafFloat
	leafDuration
	leafText
)

// schema describes how one Go type is filled.
type schema struct {
	shape shape
	t     reflect.Type // the type itself, pointer included
	ptr   bool         // t is *T; the rest describes T
	leaf  leafKind     // shapeLeaf
	// shapeStruct
	fields []*field // sorted by name
	byName map[string]*field
	// shapeSlice
	elem *schema
}

type field struct {
	name   string // upper-case key segment
	goName string // Go field path, e.g. Common.Enabled, for messages
	index  []int  // for reflect.Value.FieldByIndex (embedded structs)
	s      *schema
}

// compiler builds schemas and collects programming errors in the struct
// definition (unsupported types, clashing names).
type compiler struct {
	active map[reflect.Type]bool // structs being compiled, to catch recursion
	errs   []string
}

// compileRoot builds the schema for the struct type t.
func compileRoot(t reflect.Type) (*schema, error) {
	c := &compiler{active: map[reflect.Type]bool{}}
	s := c.compile(t, "")
	if len(c.errs) > 0 {
		sort.Strings(c.errs)
		errs := make([]error, len(c.errs))
		for i, e := range c.errs {
			errs[i] = errors.New("config: " + e)
		}
		return nil, errors.Join(errs...)
	}
	return s, nil
}

func (c *compiler) errorf(key, format string, args ...any) {
	if key == "" {
		key = "(top level)"
	}
	c.errs = append(c.errs, key+": "+fmt.Sprintf(format, args...))
}

func leafOf(t reflect.Type) leafKind {
	if reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return leafText
	}
	if t == durationType {
		return leafDuration
	}
	switch t.Kind() {
	case reflect.String:
		return leafString
	case reflect.Bool:
		return leafBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return leafInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return leafUint
	case reflect.Float32, reflect.Float64:
		return leafFloat
	}
	return 0
}

func (c *compiler) compile(t reflect.Type, key string) *schema {
	s := &schema{t: t}
	base := t
	if t.Kind() == reflect.Pointer {
		s.ptr = true
		base = t.Elem()
		if leafOf(base) == 0 && base.Kind() != reflect.Struct {
			c.errorf(key, "unsupported type %s (pointers must point to a struct or a value type)", t)
			return nil
		}
	}
	if lk := leafOf(base); lk != 0 {
		s.shape, s.leaf = shapeLeaf, lk
		return s
	}
	switch base.Kind() {
	case reflect.Struct:
		if c.active[base] {
			c.errorf(key, "unsupported recursive type %s", base)
			return nil
		}
		c.active[base] = true
		defer delete(c.active, base)
		s.shape = shapeStruct
		s.byName = map[string]*field{}
		c.addFields(s, base, key, nil, "")
		sort.Slice(s.fields, func(i, j int) bool { return s.fields[i].name < s.fields[j].name })
		return s
	case reflect.Slice:
		s.shape = shapeSlice
		s.elem = c.compile(base.Elem(), join(key, indexPlaceholder))
		if s.elem == nil {
			return nil
		}
		return s
	}
	c.errorf(key, "unsupported type %s", t)
	return nil
}

// addFields adds the fields of struct type st (reached through index from
// s's type) to s, flattening untagged embedded structs.
func (c *compiler) addFields(s *schema, st reflect.Type, key string, index []int, goPrefix string) {
	for i := range st.NumField() {
		f := st.Field(i)
		tag, tagged := f.Tag.Lookup("config")
		if tag == "-" {
			continue
		}
		idx := append(append([]int(nil), index...), i)
		if f.Anonymous && tag == "" {
			ft := f.Type
			if ft.Kind() == reflect.Struct && leafOf(ft) == 0 {
				c.addFields(s, ft, key, idx, goPrefix+f.Name+".")
				continue
			}
			if ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct && f.IsExported() {
				c.errorf(join(key, strings.ToUpper(f.Name)), "embedded pointer %s is not supported (embed the struct or name the field)", ft)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		name := strings.ToUpper(f.Name)
		if tagged {
			if !validSegment(tag) {
				c.errorf(join(key, strings.ToUpper(f.Name)), `invalid tag config:%q (want letters, digits and single underscores, or "-")`, tag)
				continue
			}
			name = strings.ToUpper(tag)
		}
		fkey := join(key, name)
		if prev := s.byName[name]; prev != nil {
			c.errorf(fkey, "fields %s and %s both map to this key", prev.goName, goPrefix+f.Name)
			continue
		}
		fs := c.compile(f.Type, fkey)
		if fs == nil {
			continue
		}
		fd := &field{name: name, goName: goPrefix + f.Name, index: idx, s: fs}
		s.byName[name] = fd
		s.fields = append(s.fields, fd)
	}
}

// validSegment reports whether a tag can be used as a key segment.
func validSegment(s string) bool {
	if s == "" || s[0] == '_' || s[len(s)-1] == '_' || strings.Contains(s, sep) || isIndex(s) {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

func join(prefix, seg string) string {
	if prefix == "" {
		return seg
	}
	return prefix + sep + seg
}

// isIndex reports whether seg is a canonical list index: decimal digits, no
// sign, no leading zero.
func isIndex(seg string) bool {
	if seg == "" || len(seg) > 1 && seg[0] == '0' {
		return false
	}
	for i := 0; i < len(seg); i++ {
		if seg[i] < '0' || seg[i] > '9' {
			return false
		}
	}
	return true
}

// collect appends the leaf keys under s, slice indexes as {n}.
func (s *schema) collect(key string, out *[]string) {
	switch s.shape {
	case shapeLeaf:
		*out = append(*out, key)
	case shapeStruct:
		for _, f := range s.fields {
			f.s.collect(join(key, f.name), out)
		}
	case shapeSlice:
		s.elem.collect(join(key, indexPlaceholder), out)
	}
}

// Keys returns every leaf key the struct v (or pointer to struct) accepts,
// upper-cased and sorted, with {n} for slice indexes, e.g.
// CONCELIER__MIRROR__DOMAINS__{n}__ID. It is meant for --help output and
// documentation.
//
// Keys panics if v is not a struct or a pointer to one, or if the struct has
// a field Load cannot fill; these are programming errors, which Load reports
// as errors.
func Keys(v any) []string {
	t := reflect.TypeOf(v)
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		panic(fmt.Sprintf("config.Keys: need a struct or a pointer to one, got %T", v))
	}
	s, err := compileRoot(t)
	if err != nil {
		panic(err)
	}
	var keys []string
	s.collect("", &keys)
	sort.Strings(keys)
	return keys
}
