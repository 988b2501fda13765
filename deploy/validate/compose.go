package validate

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// composeServices are the compose services whose settings the profile
// check reads (the components' service names in
// compose/docker-compose.mirror.yaml).
var composeServices = []string{"origin", "gateway", "sync"}

// composeFile is the part of a compose file the check reads.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

// composeService is one service: where its environment comes from, what
// it mounts and which supplementary groups it runs with.
type composeService struct {
	EnvFile     yaml.Node `yaml:"env_file"`
	Environment yaml.Node `yaml:"environment"`
	Volumes     []any     `yaml:"volumes"`
	GroupAdd    []any     `yaml:"group_add"`
	Profiles    []string  `yaml:"profiles"`
}

// componentPrefixes maps a compose service to its component's key prefixes.
var componentPrefixes = map[string][]string{"origin": originPrefixes, "gateway": gatewayPrefixes, "sync": syncPrefixes}

// interpolateRe matches ${VAR}, ${VAR:-default} and ${VAR-default}.
var interpolateRe = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}`)

// readCompose applies the compose file the way `docker compose --env-file`
// does for the origin, gateway and sync services (sync, which sits behind a
// profile, only when the env files set SYNC__ keys): ${VAR:-default} from the
// env files given so far, each service's env_file files, then its
// environment entries (which win), its bind mounts as path mappings (the
// container path is checked at the host path) and its numeric group_add
// entries as groups that may read secrets.
func (c *checker) readCompose(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		c.add(Error, path, "", "compose file: %v", unwrapPath(err))
		return
	}
	var cf composeFile
	if err := yaml.Unmarshal(data, &cf); err != nil {
		c.add(Error, path, "", "compose file: %v", err)
		return
	}
	vars := map[string]string{}
	for _, kv := range c.env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	interp := func(s string) string {
		return interpolateRe.ReplaceAllStringFunc(s, func(m string) string {
			sub := interpolateRe.FindStringSubmatch(m)
			v, ok := vars[sub[1]]
			switch {
			case sub[2] == ":-" && v == "", sub[2] == "-" && !ok:
				return sub[3]
			}
			return v
		})
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		dir = filepath.Dir(path)
	}
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return filepath.Clean(p)
		}
		return filepath.Join(dir, p)
	}
	seenEnv := map[string]bool{}
	for _, f := range c.opts.EnvFiles {
		if a, err := filepath.Abs(f); err == nil {
			seenEnv[a] = true
		}
	}
	var fixed []string // environment entries, applied after every env file
	for _, name := range composeServices {
		svc, ok := cf.Services[name]
		if !ok {
			continue
		}
		// A service behind a profile (sync) counts only when the env files
		// configure it.
		if len(svc.Profiles) > 0 && !c.envHas(componentPrefixes[name]) {
			continue
		}
		for _, f := range stringsOf(&svc.EnvFile) {
			p := abs(interp(f))
			if a, err := filepath.Abs(p); err == nil && !seenEnv[a] {
				seenEnv[a] = true
				c.readEnvFile(p)
			}
		}
		for _, kv := range envEntries(&svc.Environment) {
			fixed = append(fixed, interp(kv))
		}
		for _, v := range svc.Volumes {
			src, dst := volumeMount(v, interp)
			if dst == "" || !(strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") || strings.HasPrefix(src, "~")) {
				continue // a named volume: nothing on the host to check
			}
			c.opts.PathMap = append(c.opts.PathMap, PathMapping{From: filepath.Clean(dst), To: abs(src)})
		}
		for _, g := range svc.GroupAdd {
			if gid, err := strconv.Atoi(interp(fmt.Sprint(g))); err == nil {
				c.groups[gid] = true
			}
		}
	}
	for _, kv := range fixed {
		c.setEnv(kv, path)
	}
	sort.SliceStable(c.opts.PathMap, func(i, j int) bool { return len(c.opts.PathMap[i].From) > len(c.opts.PathMap[j].From) })
}

// stringsOf reads a string or a list of strings (env_file's two forms; the
// long form's path).
func stringsOf(n *yaml.Node) []string {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.ScalarNode:
		return []string{n.Value}
	case yaml.SequenceNode:
		var out []string
		for _, e := range n.Content {
			switch e.Kind {
			case yaml.ScalarNode:
				out = append(out, e.Value)
			case yaml.MappingNode:
				for i := 0; i+1 < len(e.Content); i += 2 {
					if e.Content[i].Value == "path" {
						out = append(out, e.Content[i+1].Value)
					}
				}
			}
		}
		return out
	}
	return nil
}

// envEntries reads environment's map or list form as KEY=VALUE entries.
func envEntries(n *yaml.Node) []string {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	var out []string
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			out = append(out, n.Content[i].Value+"="+n.Content[i+1].Value)
		}
	case yaml.SequenceNode:
		for _, e := range n.Content {
			if strings.Contains(e.Value, "=") {
				out = append(out, e.Value)
			}
		}
	}
	return out
}

// volumeMount returns a volume's source and container path, from the short
// form "SRC:DST[:MODE]" (interpolated before it is split: a default may
// hold a colon) or the long form {source, target}.
func volumeMount(v any, interp func(string) string) (src, dst string) {
	switch v := v.(type) {
	case string:
		parts := strings.Split(interp(v), ":")
		if len(parts) >= 2 {
			return parts[0], parts[1]
		}
	case map[string]any:
		s, _ := v["source"].(string)
		t, _ := v["target"].(string)
		return interp(s), interp(t)
	}
	return "", ""
}
