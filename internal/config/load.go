package config

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load fills dst (a pointer to a struct) from the YAML file at path (skipped
// when path == "") and then from environ (os.Environ() format "K=V"), env
// overriding file. Only environment variables whose first segment names a
// top-level section of dst are considered (PATH, HOME etc. are ignored).
// Fields not mentioned keep the values dst already has (callers set
// defaults first).
//
// Load reports every problem at once, sorted, joined with errors.Join; see
// the package documentation for the key scheme, value syntax and error
// format. On error dst is left unchanged.
func Load(dst any, path string, environ []string) error {
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config: Load needs a non-nil pointer to a struct, got %T", dst)
	}
	s, err := compileRoot(rv.Elem().Type())
	if err != nil {
		return err
	}
	l := &loader{file: path}
	// Work on a copy; slices and pointers are replaced, never written
	// through, so dst and the caller's defaults stay intact until success.
	work := reflect.New(rv.Elem().Type()).Elem()
	work.Set(rv.Elem())
	if path != "" {
		if root := l.readFile(path); root != nil {
			l.apply(root, s, work)
		}
	}
	l.apply(l.envTree(environ, s), s, work)
	if err := l.err(); err != nil {
		return err
	}
	rv.Elem().Set(work)
	return nil
}

// loader holds the state of one Load call.
type loader struct {
	file string  // the YAML file, for positions in messages
	errs []error // one per problem
	// merging holds the mappings whose merge keys (<<) are being expanded,
	// to refuse a merge cycle.
	merging map[*yaml.Node]bool
	// open holds the YAML mappings and sequences being converted, from the
	// root to the current node, to refuse an alias cycle.
	open map[*yaml.Node]bool
}

// errorf records a problem with key. Problems from the file get the file
// and line appended; a problem with no key is reported at the position.
func (l *loader) errorf(n *node, key, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	switch {
	case key == "" && n != nil && n.line > 0:
		msg = fmt.Sprintf("%s:%d: %s", l.file, n.line, msg)
	case key == "":
		msg = l.file + ": " + msg
	case n != nil && n.line > 0:
		msg = fmt.Sprintf("%s: %s (%s:%d)", key, msg, l.file, n.line)
	default:
		msg = key + ": " + msg
	}
	l.errs = append(l.errs, errors.New(msg))
}

// err joins the problems, sorted by text, duplicates dropped.
func (l *loader) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	sort.SliceStable(l.errs, func(i, j int) bool { return l.errs[i].Error() < l.errs[j].Error() })
	var errs []error
	for i, e := range l.errs {
		if i > 0 && e.Error() == l.errs[i-1].Error() {
			continue
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// fail records a problem that is not about one key.
func (l *loader) fail(format string, args ...any) {
	l.errs = append(l.errs, fmt.Errorf(format, args...))
}

// apply fills v, described by s, from n.
func (l *loader) apply(n *node, s *schema, v reflect.Value) {
	switch s.shape {
	case shapeLeaf:
		l.applyLeaf(n, s, v)
	case shapeStruct:
		l.applyStruct(n, s, v)
	case shapeSlice:
		l.applySlice(n, s, v)
	}
}

func (l *loader) applyLeaf(n *node, s *schema, v reflect.Value) {
	switch n.kind {
	case kindMap:
		l.errorf(n, n.key, "expected a value, got a mapping")
		return
	case kindSeq:
		l.errorf(n, n.key, "expected a value, got a list")
		return
	case kindEnv:
		for _, seg := range n.sortedKids() {
			for _, leaf := range n.kids[seg].envLeaves() {
				l.errorf(leaf, leaf.key, "unknown key (%s is a value, not a section)", n.key)
			}
		}
		if !n.hasVal {
			return
		}
	}
	raw := n.val // "" for kindNull
	if s.ptr {
		if strings.TrimSpace(raw) == "" {
			v.Set(reflect.Zero(s.t))
			return
		}
		p := reflect.New(s.t.Elem())
		if l.parse(n, s, p.Elem(), raw) {
			v.Set(p)
		}
		return
	}
	l.parse(n, s, v, raw)
}

func (l *loader) applyStruct(n *node, s *schema, v reflect.Value) {
	switch n.kind {
	case kindScalar:
		l.errorf(n, n.key, "expected a mapping, got a value")
		return
	case kindSeq:
		l.errorf(n, n.key, "expected a mapping, got a list")
		return
	case kindNull:
		return
	case kindEnv:
		if n.hasVal {
			l.errorf(n, n.key, "is a section, not a value (set the keys under it)")
		}
	}
	if len(n.kids) == 0 {
		return
	}
	target := v
	var np reflect.Value
	if s.ptr {
		np = reflect.New(s.t.Elem())
		if !v.IsNil() {
			np.Elem().Set(v.Elem())
		}
		target = np.Elem()
	}
	for _, seg := range n.sortedKids() {
		kid := n.kids[seg]
		f := s.byName[seg]
		if f == nil {
			l.unknown(kid, s, n.key)
			continue
		}
		l.apply(kid, f.s, target.FieldByIndex(f.index))
	}
	if s.ptr {
		v.Set(np)
	}
}

func (l *loader) applySlice(n *node, s *schema, v reflect.Value) {
	switch n.kind {
	case kindScalar:
		l.errorf(n, n.key, "expected a list, got a value")
		return
	case kindMap:
		l.errorf(n, n.key, "expected a list, got a mapping")
		return
	case kindNull:
		v.Set(reflect.Zero(s.t))
		return
	case kindSeq:
		nv := reflect.MakeSlice(s.t, len(n.items), len(n.items))
		for i, item := range n.items {
			l.apply(item, s.elem, nv.Index(i))
		}
		v.Set(nv)
		return
	}
	// Environment: merge indexed keys into the list as it stands.
	base := v
	cleared := false
	if n.hasVal {
		if strings.TrimSpace(n.val) == "" {
			base, cleared = reflect.Zero(s.t), true
		} else {
			l.errorf(n, n.key, "is a list, not a value (set %s__0, %s__1, ...)", n.key, n.key)
		}
	}
	byIndex := map[int]*node{}
	for _, seg := range n.sortedKids() {
		kid := n.kids[seg]
		i, err := strconv.Atoi(seg)
		if !isIndex(seg) || err != nil {
			for _, leaf := range kid.envLeaves() {
				l.errorf(leaf, leaf.key, "invalid list index %q", seg)
			}
			continue
		}
		byIndex[i] = kid
	}
	next := base.Len()
	for byIndex[next] != nil {
		next++
	}
	idxs := make([]int, 0, len(byIndex))
	for i := range byIndex {
		idxs = append(idxs, i)
	}
	sort.Ints(idxs)
	for _, i := range idxs {
		if i > next {
			have := "have none"
			if next > 0 {
				have = fmt.Sprintf("have 0..%d", next-1)
			}
			l.errorf(byIndex[i], byIndex[i].key, "index out of sequence (%s)", have)
			// Still check the keys under it, into a scratch element, so
			// that every problem is reported in one go.
			l.apply(byIndex[i], s.elem, reflect.New(s.elem.t).Elem())
		}
	}
	if len(byIndex) == 0 && !cleared {
		return
	}
	if next == 0 {
		v.Set(reflect.Zero(s.t))
		return
	}
	nv := reflect.MakeSlice(s.t, next, next)
	reflect.Copy(nv, base)
	for _, i := range idxs {
		if i < next {
			l.apply(byIndex[i], s.elem, nv.Index(i))
		}
	}
	v.Set(nv)
}

// unknown reports kid, a key under the section s at parentKey that s does
// not have, suggesting the closest key s does have.
func (l *loader) unknown(kid *node, s *schema, parentKey string) {
	if kid.kind != kindEnv {
		// A YAML key: compare it with the section's own names.
		seg := strings.TrimPrefix(kid.key, parentKey+sep)
		if parentKey == "" {
			seg = kid.key
		}
		names := make([]string, len(s.fields))
		for i, f := range s.fields {
			names[i] = f.name
		}
		l.errorf(kid, kid.key, "unknown key%s", didYouMean(parentKey, seg, names))
		return
	}
	// Environment variables: compare the rest of each name with every
	// leaf key under the section.
	var rel []string
	s.collect("", &rel)
	for _, leaf := range kid.envLeaves() {
		rest := strings.TrimPrefix(leaf.key, parentKey+sep)
		if parentKey == "" {
			rest = leaf.key
		}
		l.errorf(leaf, leaf.key, "unknown key%s", didYouMean(parentKey, rest, instantiate(rel, rest)))
	}
}

// instantiate replaces {n} in each candidate with the index written at the
// same position in key, or 0.
func instantiate(cands []string, key string) []string {
	segs := strings.Split(key, sep)
	out := make([]string, len(cands))
	for i, c := range cands {
		if !strings.Contains(c, indexPlaceholder) {
			out[i] = c
			continue
		}
		cs := strings.Split(c, sep)
		for j := range cs {
			if cs[j] == indexPlaceholder {
				cs[j] = "0"
				if j < len(segs) && isIndex(segs[j]) {
					cs[j] = segs[j]
				}
			}
		}
		out[i] = strings.Join(cs, sep)
	}
	return out
}

// didYouMean returns " (did you mean PARENT__CAND?)" for the candidate
// closest to got, if it is close enough, else "".
func didYouMean(parentKey, got string, cands []string) string {
	best, bestD := "", -1
	for _, c := range cands {
		d := distance(got, c)
		if bestD < 0 || d < bestD || d == bestD && c < best {
			best, bestD = c, d
		}
	}
	limit := min(1+len(got)/5, 3)
	if bestD <= 0 || bestD > limit {
		return ""
	}
	return " (did you mean " + join(parentKey, best) + "?)"
}

// distance is the optimal-string-alignment edit distance: insertions,
// deletions, substitutions and adjacent transpositions each cost 1.
func distance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
