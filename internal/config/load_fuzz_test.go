package config

import (
	"encoding"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fuzzCfg has the shape of a real configuration (Cfg) and one field of
// every leaf kind (Leaves), including secrets and a TextUnmarshaler whose
// errors echo the value.
type fuzzCfg struct {
	Cfg
	Leaves Leaves
}

// secretMarker starts the value FuzzLoad gives a secret key: it must never
// appear in an error about that key.
const secretMarker = "Zq9secret"

// FuzzLoad loads arbitrary YAML bytes and environment entries (one K=V a
// line) into fuzzCfg and holds Load to:
//   - never a panic;
//   - on error, dst unchanged, and every joined error names its place: a
//     key (printed upper-case) or the file;
//   - an error about a secret key never shows the secret's value;
//   - the same inputs give the same result (value or error text);
//   - what loads re-validates: written back as environment variables (one
//     per non-zero leaf) and loaded into a zero struct, it is the same value.
//
// secret, when non-empty, is set as LEAVES__DBPASSWORD (a secret key whose
// TextUnmarshaler echoes its input) behind secretMarker.
func FuzzLoad(f *testing.F) {
	good, err := os.ReadFile("testdata/good.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, "", "")
	f.Add(good, "CONCELIER__MIRROR__DOMAINS__2__ID=third\nCONCELIER__AUTHORITY__BYPASSNETWORKS=", "")
	f.Add(good, "CONCELIER__MIRROR__DOMAINS__3__ID=gap", "")
	f.Add(good, "", "123")
	f.Add(good, "", "not digits")
	bad, _ := filepath.Glob("testdata/bad/*.yaml")
	for _, p := range bad {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		env, _ := os.ReadFile(strings.TrimSuffix(p, ".yaml") + ".env")
		f.Add(b, string(env), "")
	}
	for _, s := range []struct{ yaml, env string }{
		{"leaves:\n  s: ' x '\n  b: YES\n  i: -9223372036854775808\n  u64: 18446744073709551615\n  f32: 3.4e38\n  d: 1.12:00:00\n  p: 10.0.0.1/8\n  a: fe80::1%eth0\n  l: warn+2\n  port: 65535\n  pb: no\n  pi: '+7'\n  pd: 00:00:30\n  pp: ::/0\n  ps: v\n  other_name: r\n  refreshToken: [1, 2]\n  nested: {x: 3}\n", ""},
		{"", "LEAVES__I8=128\nLEAVES__U=-1\nLEAVES__F64=NaN\nLEAVES__D=30\nLEAVES__APITOKEN=abc\nLEAVES__REFRESHTOKEN__0=x\nLEAVES__NESTED__X=1"},
		{"", "leaves__s=a\nLEAVES__S=b"},
		{"", "LEAVES__S=a=b\nLEAVES__=x\nLEAVES=x\n=x\nLEAVES__S__X=1"},
		{"leaves: &a\n  s: x\n  <<: *a\n", ""},
		{"a: &a [*a]\n", ""},
		{"x: &x [&y [*x, *x], *x]\nleaves: {s: *x}\n", ""},
		{"concelier:\n  mirror:\n    domains: []\n", "CONCELIER__MIRROR__DOMAINS__0__ID=p"},
		{"concelier: {mirror: {domains: [{id: a}, {id: b}]}}\n", "CONCELIER__MIRROR__DOMAINS="},
		{"? [a]\n: b\n", ""},
		{"leaves:\n  s: !!binary aGVsbG8=\n", ""},
		{"leaves:\n  Leaves: 1\n  LEAVES: 2\n", ""},
		{"\xff: 1\n", "\xff=1"},
		{"leaves:\n  s: \"\\0\\r\\n\"\n", "LEAVES__S=\x00\r"},
		{"---\n---\n", ""},
		{"leaves: ~\n", "LEAVES__PI="},
		{"leaves:\n\tb: 1\n", ""},
	} {
		f.Add([]byte(s.yaml), s.env, "")
	}

	path := filepath.Join(f.TempDir(), "config.yaml")
	f.Fuzz(func(t *testing.T, yaml []byte, env, secret string) {
		if err := os.WriteFile(path, yaml, 0o600); err != nil {
			t.Fatal(err)
		}
		environ := strings.Split(env, "\n")
		if secret != "" {
			environ = append(environ, "LEAVES__DBPASSWORD="+secretMarker+secret)
		}
		defaults := func() fuzzCfg {
			var c fuzzCfg
			c.Leaves.S = "default"
			c.Concelier.Mirror.Domains = []Domain{{ID: "d"}}
			return c
		}
		got := defaults()
		err := Load(&got, path, environ)
		again := defaults()
		err2 := Load(&again, path, environ)
		if errText(err) != errText(err2) || (err == nil && !reflect.DeepEqual(got, again)) {
			t.Fatalf("two loads differ:\n\t%v / %+v\n\t%v / %+v", err, got, err2, again)
		}
		if err != nil {
			if !reflect.DeepEqual(got, defaults()) {
				t.Fatalf("dst changed on error %v: %+v", err, got)
			}
			checkErrors(t, err, path)
			return
		}
		if secret != "" {
			t.Fatalf("LEAVES__DBPASSWORD=%q loaded", secretMarker+secret)
		}
		var envOut []string
		encodeEnv("", reflect.ValueOf(got), false, &envOut)
		var back fuzzCfg
		if err := Load(&back, "", envOut); err != nil {
			t.Fatalf("loaded %+v, but it does not load back from %q: %v", got, envOut, err)
		}
		emptyToNil(reflect.ValueOf(&got).Elem())
		emptyToNil(reflect.ValueOf(&back).Elem())
		if !reflect.DeepEqual(got, back) {
			t.Fatalf("round trip through %q changed the value:\n\t%+v\n\t%+v", envOut, got, back)
		}
	})
}

// checkErrors holds every joined error to naming a key or the file, and
// errors about a secret key to not showing secretMarker.
func checkErrors(t *testing.T, err error, path string) {
	t.Helper()
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		msg := e.Error()
		if strings.HasPrefix(msg, path+":") || strings.HasPrefix(msg, "config file "+path+":") {
			continue
		}
		key, rest, ok := strings.Cut(msg, ": ")
		if !ok || key == "" || key != strings.ToUpper(key) {
			t.Fatalf("error names neither a key nor the file: %q", msg)
		}
		if isSecret(key) && strings.Contains(rest, secretMarker) {
			t.Fatalf("error about secret key %s shows its value: %q", key, msg)
		}
	}
}

var (
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
	durationT     = reflect.TypeFor[time.Duration]()
)

// encodeEnv appends KEY=VALUE for every leaf under v that a load into a
// zero struct needs: non-zero leaves, and all leaves of list elements and
// of pointed-to values (force), so that they exist.
func encodeEnv(key string, v reflect.Value, force bool, out *[]string) {
	t := v.Type()
	switch {
	case t.Kind() == reflect.Pointer:
		if !v.IsNil() {
			encodeEnv(key, v.Elem(), true, out)
		}
		return
	case leafOf(t) != 0:
		if !force && v.IsZero() {
			return
		}
		*out = append(*out, key+"="+envText(v))
		return
	case t.Kind() == reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			encodeEnv(join(key, strconv.Itoa(i)), v.Index(i), true, out)
		}
		return
	case t.Kind() == reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			tag := sf.Tag.Get("config")
			if !sf.IsExported() || tag == "-" {
				continue
			}
			if sf.Anonymous && tag == "" {
				encodeEnv(key, v.Field(i), force, out)
				continue
			}
			seg := strings.ToUpper(sf.Name)
			if tag != "" {
				seg = tag
			}
			encodeEnv(join(key, seg), v.Field(i), force, out)
		}
	}
}

// envText is the text Load parses back to v.
func envText(v reflect.Value) string {
	if v.Type() != durationT && v.Type().Implements(textMarshaler) {
		b, err := v.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			panic(err)
		}
		return string(b)
	}
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if v.Type() == durationT {
			return time.Duration(v.Int()).String()
		}
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, v.Type().Bits())
	}
	panic("no text for " + v.Type().String())
}

// emptyToNil makes every empty slice under v nil: a list emptied by the
// file or the environment and one never set are the same configuration.
func emptyToNil(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			emptyToNil(v.Elem())
		}
	case reflect.Slice:
		if v.Len() == 0 {
			if !v.IsNil() {
				v.Set(reflect.Zero(v.Type()))
			}
			return
		}
		for i := 0; i < v.Len(); i++ {
			emptyToNil(v.Index(i))
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				emptyToNil(v.Field(i))
			}
		}
	}
}

// TestYAMLCycles: documents whose aliases or merge keys refer to a node
// that contains them. FuzzLoad found both: a self-merge overflowed the
// stack (the process died), and "a: &a [*a]" ran for minutes building
// ever longer keys until the node budget ran out.
func TestYAMLCycles(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"merge of itself", "leaves: &a\n  s: x\n  <<: *a\n", "LEAVES: merge key (<<) merges the mapping it is in (PATH:3)"},
		{"merge of itself in a list", "leaves: &a\n  s: x\n  <<: [*a]\n", "LEAVES: merge key (<<) merges the mapping it is in (PATH:3)"},
		{"merge cycle of two", "a: &a\n  b: &b\n    <<: *a\n  <<: *b\n", "merge key (<<) merges the mapping it is in"},
		{"alias in its own list", "leaves:\n  refreshToken: &a [1, *a]\n", "LEAVES__REFRESHTOKEN__1: alias refers to a node that contains it (PATH:2)"},
		{"alias in its own mapping", "leaves: &a\n  nested: *a\n", "LEAVES__NESTED: alias refers to a node that contains it (PATH:2)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.yaml)
			var c fuzzCfg
			err := Load(&c, path, nil)
			if want := strings.ReplaceAll(tt.want, "PATH", path); err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Load: %v; want an error containing %q", err, want)
			}
		})
	}
}
