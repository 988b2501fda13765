package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

type nodeKind int

const (
	kindScalar nodeKind = iota + 1 // YAML scalar
	kindNull                       // YAML null (`key:`, `key: ~`)
	kindMap                        // YAML mapping
	kindSeq                        // YAML sequence
	kindEnv                        // environment: a value, sub-keys, or both
)

// node is one key from either source, before it meets the struct.
type node struct {
	key    string // full upper-case key, e.g. CONCELIER__MIRROR__ENABLED
	line   int    // YAML line; 0 for the environment
	kind   nodeKind
	val    string // kindScalar, or kindEnv when hasVal
	hasVal bool
	kids   map[string]*node // kindMap or kindEnv, by upper-case segment
	items  []*node          // kindSeq
}

func (n *node) sortedKids() []string {
	segs := make([]string, 0, len(n.kids))
	for seg := range n.kids {
		segs = append(segs, seg)
	}
	sort.Strings(segs)
	return segs
}

// envLeaves returns the nodes under n (n included) that carry a value, that
// is, one per environment variable, sorted by key.
func (n *node) envLeaves() []*node {
	var out []*node
	var walk func(*node)
	walk = func(n *node) {
		if n.hasVal {
			out = append(out, n)
		}
		for _, seg := range n.sortedKids() {
			walk(n.kids[seg])
		}
	}
	walk(n)
	return out
}

// envTree builds the tree of environment variables whose first segment
// names a top-level field of root.
func (l *loader) envTree(environ []string, root *schema) *node {
	top := &node{kind: kindEnv, kids: map[string]*node{}}
	seen := map[string]string{} // upper-case name -> name as given
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			continue
		}
		up := strings.ToUpper(name)
		segs := strings.Split(up, sep)
		if root.byName[segs[0]] == nil {
			continue
		}
		if prev, dup := seen[up]; dup && prev != name {
			a, b := prev, name
			if b < a {
				a, b = b, a
			}
			l.errorf(nil, up, "set twice in the environment, as %s and %s", a, b)
			continue
		}
		seen[up] = name
		n := top
		for i, seg := range segs {
			kid := n.kids[seg]
			if kid == nil {
				kid = &node{key: strings.Join(segs[:i+1], sep), kind: kindEnv, kids: map[string]*node{}}
				n.kids[seg] = kid
			}
			n = kid
		}
		n.val, n.hasVal = val, true
	}
	return top
}

// yamlLine matches the position yaml.v3 puts in its syntax errors.
var yamlLine = regexp.MustCompile(`^yaml: line \d+: `)

// decodeYAML returns the non-empty documents in data; a trailing "---" or
// an empty document is not one.
func decodeYAML(data []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		doc := new(yaml.Node)
		err := dec.Decode(doc)
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(doc.Content) == 0 || doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null" && len(docs) > 0 {
			continue
		}
		docs = append(docs, doc)
	}
}

// yamlMessage is a yaml.v3 error without its "yaml: line N: " prefix.
func yamlMessage(err error) string {
	msg := err.Error()
	if loc := yamlLine.FindStringIndex(msg); loc != nil {
		return msg[loc[1]:]
	}
	return strings.TrimPrefix(msg, "yaml: ")
}

// syntaxLine returns the 1-based line where the syntax error msg appears
// in data, or 0. yaml.v3's own line number is unreliable: for parser
// errors it is the zero-based line where the enclosing construct starts
// ("line 1" for a bad key on line 5). The first line is found instead as
// the shortest prefix of whole lines that fails with the same message, by
// binary search, so the cost stays O(n log n) and only on the error path.
func syntaxLine(data []byte, msg string) int {
	var ends []int // ends[k-1]: the offset just past line k
	for i, b := range data {
		if b == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		ends = append(ends, len(data))
	}
	fails := func(k int) bool {
		_, err := decodeYAML(data[:ends[k-1]])
		return err != nil && yamlMessage(err) == msg
	}
	if len(ends) == 0 || !fails(len(ends)) {
		return 0
	}
	lo, hi := 1, len(ends)
	for lo < hi {
		if mid := (lo + hi) / 2; fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// maxYAMLNodes bounds alias expansion ("billion laughs"); real files have
// hundreds of nodes.
const maxYAMLNodes = 1 << 17

// readFile parses the YAML file at path into a tree, or records why it
// cannot and returns nil.
func (l *loader) readFile(path string) *node {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		l.fail("config file %s: %w", path, err)
		return nil
	}
	docs, err := decodeYAML(data)
	if err != nil {
		msg := yamlMessage(err)
		if line := syntaxLine(data, msg); line > 0 {
			l.fail("%s:%d: YAML syntax error: %s", path, line, msg)
		} else {
			l.fail("%s: YAML syntax error: %s", path, msg)
		}
		return nil
	}
	if len(docs) == 0 {
		return nil // empty file
	}
	doc := docs[0]
	if len(docs) > 1 {
		l.fail("%s:%d: more than one YAML document", path, docs[1].Line)
		return nil
	}
	budget := maxYAMLNodes
	root := l.yamlTree(doc, "", doc.Line, &budget)
	if root == nil || budget < 0 {
		return nil
	}
	switch root.kind {
	case kindMap:
		return root
	case kindNull:
		return nil
	}
	l.fail("%s:%d: the top level must be a mapping of sections", path, root.line)
	return nil
}

// yamlTree converts y, found at key (line is where the key was written),
// into a node. It returns nil after recording an error.
func (l *loader) yamlTree(y *yaml.Node, key string, line int, budget *int) *node {
	for y != nil && y.Kind == yaml.AliasNode {
		y = y.Alias
	}
	if y == nil {
		return &node{key: key, line: line, kind: kindNull}
	}
	// An alias to a node that contains it would nest forever; the budget
	// below stops that, but only after building keys that grow with the
	// depth (quadratic: "a: &a [*a]" took minutes). Refuse the cycle.
	if l.open[y] {
		l.errorf(&node{line: line}, key, "alias refers to a node that contains it")
		return nil
	}
	if y.Kind == yaml.MappingNode || y.Kind == yaml.SequenceNode {
		if l.open == nil {
			l.open = map[*yaml.Node]bool{}
		}
		l.open[y] = true
		defer delete(l.open, y)
	}
	if *budget--; *budget < 0 {
		if *budget == -1 {
			l.fail("%s: too many YAML nodes (alias expansion?)", l.file)
		}
		return nil
	}
	switch y.Kind {
	case yaml.DocumentNode:
		if len(y.Content) == 0 {
			return &node{key: key, line: y.Line, kind: kindNull}
		}
		return l.yamlTree(y.Content[0], key, y.Content[0].Line, budget)
	case yaml.ScalarNode:
		if y.Tag == "!!null" {
			return &node{key: key, line: line, kind: kindNull}
		}
		return &node{key: key, line: line, kind: kindScalar, val: y.Value, hasVal: true}
	case yaml.SequenceNode:
		n := &node{key: key, line: line, kind: kindSeq}
		for i, item := range y.Content {
			kid := l.yamlTree(item, join(key, fmt.Sprint(i)), item.Line, budget)
			if kid == nil {
				kid = &node{key: join(key, fmt.Sprint(i)), line: item.Line, kind: kindNull}
			}
			n.items = append(n.items, kid)
		}
		return n
	case yaml.MappingNode:
		n := &node{key: key, line: line, kind: kindMap, kids: map[string]*node{}}
		l.yamlMapping(n, y, budget, false)
		return n
	}
	l.errorf(&node{line: line}, key, "unsupported YAML node")
	return nil
}

// yamlMapping adds the entries of mapping y to n. Entries from merge keys
// (<<) are added afterwards and never replace explicit ones; merged is true
// while adding those.
func (l *loader) yamlMapping(n *node, y *yaml.Node, budget *int, merged bool) {
	written := map[string]*yaml.Node{} // upper-case key -> key node, this mapping only
	var merges []*yaml.Node
	for i := 0; i+1 < len(y.Content); i += 2 {
		k, v := y.Content[i], y.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			l.errorf(&node{line: k.Line}, n.key, "mapping keys must be plain strings")
			continue
		}
		up := strings.ToUpper(k.Value)
		ckey := join(n.key, up)
		if prev := written[up]; prev != nil {
			if prev.Value == k.Value {
				l.errorf(&node{line: k.Line}, ckey, "duplicate key %q, first at line %d", k.Value, prev.Line)
			} else {
				l.errorf(&node{line: k.Line}, ckey, "key %q differs only in case from %q at line %d", k.Value, prev.Value, prev.Line)
			}
			continue
		}
		written[up] = k
		if merged && n.kids[up] != nil {
			continue
		}
		if kid := l.yamlTree(v, ckey, k.Line, budget); kid != nil {
			n.kids[up] = kid
		}
	}
	for _, m := range merges {
		at := m.Line // where the merge key's value is written
		for m != nil && m.Kind == yaml.AliasNode {
			m = m.Alias
		}
		var maps []*yaml.Node
		switch {
		case m == nil:
		case m.Kind == yaml.MappingNode:
			maps = append(maps, m)
		case m.Kind == yaml.SequenceNode:
			for _, item := range m.Content {
				for item != nil && item.Kind == yaml.AliasNode {
					item = item.Alias
				}
				if item == nil || item.Kind != yaml.MappingNode {
					l.errorf(&node{line: m.Line}, n.key, "merge key (<<) needs a mapping or a list of mappings")
					continue
				}
				maps = append(maps, item)
			}
		default:
			l.errorf(&node{line: m.Line}, n.key, "merge key (<<) needs a mapping or a list of mappings")
		}
		for _, mm := range maps {
			// A mapping that merges itself, directly or through the
			// mappings it merges, would recurse forever: no node is
			// added, so the budget below would not stop it. Each merge is
			// charged to the budget, which bounds merges of merges too.
			if mm == y || l.merging[mm] {
				l.errorf(&node{line: at}, n.key, "merge key (<<) merges the mapping it is in")
				continue
			}
			if *budget--; *budget < 0 {
				if *budget == -1 {
					l.fail("%s: too many YAML nodes (alias expansion?)", l.file)
				}
				return
			}
			if l.merging == nil {
				l.merging = map[*yaml.Node]bool{}
			}
			l.merging[y] = true
			l.yamlMapping(n, mm, budget, true)
			delete(l.merging, y)
		}
	}
}
