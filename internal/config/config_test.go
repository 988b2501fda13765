package config

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The test struct is shaped like the real one.
type Domain struct {
	ID                         string
	DisplayName                string
	RequireAuthentication      *bool
	MaxDownloadRequestsPerHour int
}

type Mirror struct {
	Enabled                 bool
	ExportRoot              string
	ActiveExportID          string
	RequireAuthentication   bool
	MaxIndexRequestsPerHour int
	Domains                 []Domain
}

type Authority struct {
	Enabled                bool
	AllowAnonymousFallback bool
	BypassNetworks         []netip.Prefix
	ClientSecret           string
}

type Product struct {
	Mirror    Mirror
	Authority Authority
}

type Cfg struct {
	Concelier Product
	Excititor struct {
		Mirror    Mirror
		Artifacts struct{ FileSystem struct{ Root string } }
	}
}

// pin is a TextUnmarshaler whose errors echo the value, as many do.
type pin string

func (p *pin) UnmarshalText(b []byte) error {
	if strings.Trim(string(b), "0123456789") != "" {
		return fmt.Errorf("pin %q is not all digits", b)
	}
	*p = pin(b)
	return nil
}

type port uint16

// Leaves has one field of every supported leaf kind.
type Leaves struct {
	S       string
	B       bool
	I       int
	I8      int8
	I16     int16
	I32     int32
	I64     int64
	U       uint
	U8      uint8
	U16     uint16
	U32     uint32
	U64     uint64
	F32     float32
	F64     float64
	D       time.Duration
	P       netip.Prefix
	A       netip.Addr
	L       slog.Level
	Port    port
	PB      *bool
	PI      *int
	PD      *time.Duration
	PP      *netip.Prefix
	PS      *string
	Renamed string `config:"OTHER_NAME"`
	Skipped string `config:"-"`
	hidden  string //nolint:unused // unexported fields are ignored

	ApiToken     int
	DbPassword   pin
	RefreshToken []int
	Nested       *struct{ X int }
}

type LeafCfg struct{ Leaves Leaves }

func ptr[T any](v T) *T { return &v }

// writeFile writes content to a new file in a temporary directory.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// errText returns err's text, or "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestEnvOnly(t *testing.T) {
	env := []string{
		"CONCELIER__MIRROR__ENABLED=true",
		"CONCELIER__MIRROR__EXPORTROOT=/exports",
		"CONCELIER__MIRROR__ACTIVEEXPORTID=20250101T000000Z",
		"CONCELIER__MIRROR__REQUIREAUTHENTICATION=yes",
		"CONCELIER__MIRROR__MAXINDEXREQUESTSPERHOUR=600",
		"CONCELIER__MIRROR__DOMAINS__0__ID=primary",
		"CONCELIER__MIRROR__DOMAINS__0__DISPLAYNAME=Primary",
		"CONCELIER__MIRROR__DOMAINS__0__MAXDOWNLOADREQUESTSPERHOUR=1200",
		"CONCELIER__MIRROR__DOMAINS__1__ID=community",
		"CONCELIER__MIRROR__DOMAINS__1__REQUIREAUTHENTICATION=false",
		"CONCELIER__AUTHORITY__ENABLED=1",
		"CONCELIER__AUTHORITY__ALLOWANONYMOUSFALLBACK=No",
		"CONCELIER__AUTHORITY__BYPASSNETWORKS__0=10.0.0.0/8",
		"CONCELIER__AUTHORITY__BYPASSNETWORKS__1=fd00::/8",
		"CONCELIER__AUTHORITY__CLIENTSECRET=s3cr3t",
		"EXCITITOR__MIRROR__ENABLED=TRUE",
		"EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT=/x",
	}
	var got Cfg
	if err := Load(&got, "", env); err != nil {
		t.Fatal(err)
	}
	var want Cfg
	want.Concelier.Mirror = Mirror{
		Enabled: true, ExportRoot: "/exports", ActiveExportID: "20250101T000000Z",
		RequireAuthentication: true, MaxIndexRequestsPerHour: 600,
		Domains: []Domain{
			{ID: "primary", DisplayName: "Primary", MaxDownloadRequestsPerHour: 1200},
			{ID: "community", RequireAuthentication: ptr(false)},
		},
	}
	want.Concelier.Authority = Authority{
		Enabled:        true,
		BypassNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")},
		ClientSecret:   "s3cr3t",
	}
	want.Excititor.Mirror.Enabled = true
	want.Excititor.Artifacts.FileSystem.Root = "/x"
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestFileOnly(t *testing.T) {
	var got Cfg
	if err := Load(&got, "testdata/good.yaml", nil); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, goodYAML()) {
		t.Errorf("got  %+v\nwant %+v", got, goodYAML())
	}
}

// goodYAML is what testdata/good.yaml holds.
func goodYAML() Cfg {
	mirror := func() Mirror { // fresh slices each call: tests edit one product
		return Mirror{
			Enabled: true, ExportRoot: "/exports", RequireAuthentication: true, MaxIndexRequestsPerHour: 600,
			Domains: []Domain{
				{ID: "primary", DisplayName: "Primary", MaxDownloadRequestsPerHour: 1200},
				{ID: "community", DisplayName: "yes", RequireAuthentication: ptr(false)},
			},
		}
	}
	var c Cfg
	c.Concelier.Mirror = mirror()
	c.Concelier.Authority = Authority{
		Enabled:        true,
		BypassNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		ClientSecret:   "from-file",
	}
	// excititor.mirror merges concelier's anchor and overrides exportRoot.
	c.Excititor.Mirror = mirror()
	c.Excititor.Mirror.ExportRoot = "/exports/excititor"
	c.Excititor.Artifacts.FileSystem.Root = "/srv/artifacts"
	return c
}

func TestEnvOverridesFile(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		edit func(*Cfg)
	}{
		{"scalar", []string{"CONCELIER__MIRROR__ENABLED=false"}, func(c *Cfg) { c.Concelier.Mirror.Enabled = false }},
		{"string", []string{"EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT=/elsewhere"}, func(c *Cfg) { c.Excititor.Artifacts.FileSystem.Root = "/elsewhere" }},
		{"list element field", []string{"CONCELIER__MIRROR__DOMAINS__0__ID=main"}, func(c *Cfg) {
			c.Concelier.Mirror.Domains[0].ID = "main" // the other fields of element 0 stay
		}},
		{"scalar list element", []string{"CONCELIER__AUTHORITY__BYPASSNETWORKS__0=192.168.0.0/16"}, func(c *Cfg) {
			c.Concelier.Authority.BypassNetworks = []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16")}
		}},
		{"pointer leaf set", []string{"CONCELIER__MIRROR__DOMAINS__0__REQUIREAUTHENTICATION=true"}, func(c *Cfg) {
			c.Concelier.Mirror.Domains[0].RequireAuthentication = ptr(true)
		}},
		{"pointer leaf back to unset", []string{"CONCELIER__MIRROR__DOMAINS__1__REQUIREAUTHENTICATION="}, func(c *Cfg) {
			c.Concelier.Mirror.Domains[1].RequireAuthentication = nil
		}},
		{"empty list key empties the list", []string{"CONCELIER__AUTHORITY__BYPASSNETWORKS="}, func(c *Cfg) {
			c.Concelier.Authority.BypassNetworks = nil
		}},
		{"empty list key then indexes", []string{"CONCELIER__MIRROR__DOMAINS=", "CONCELIER__MIRROR__DOMAINS__0__ID=only"}, func(c *Cfg) {
			c.Concelier.Mirror.Domains = []Domain{{ID: "only"}}
		}},
		{"lower-case names", []string{"concelier__mirror__exportroot=/lower"}, func(c *Cfg) { c.Concelier.Mirror.ExportRoot = "/lower" }},
		{"last duplicate wins", []string{"CONCELIER__MIRROR__EXPORTROOT=/a", "CONCELIER__MIRROR__EXPORTROOT=/b"}, func(c *Cfg) {
			c.Concelier.Mirror.ExportRoot = "/b"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Cfg
			if err := Load(&got, "testdata/good.yaml", tt.env); err != nil {
				t.Fatal(err)
			}
			want := goodYAML()
			tt.edit(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestEnvExtendsList(t *testing.T) {
	env := []string{
		"CONCELIER__MIRROR__DOMAINS__2__ID=third",
		"CONCELIER__MIRROR__DOMAINS__3__ID=fourth",
		"CONCELIER__MIRROR__DOMAINS__3__MAXDOWNLOADREQUESTSPERHOUR=5",
		"CONCELIER__AUTHORITY__BYPASSNETWORKS__1=172.16.0.0/12",
	}
	var got Cfg
	if err := Load(&got, "testdata/good.yaml", env); err != nil {
		t.Fatal(err)
	}
	want := goodYAML()
	want.Concelier.Mirror.Domains = append(want.Concelier.Mirror.Domains,
		Domain{ID: "third"}, Domain{ID: "fourth", MaxDownloadRequestsPerHour: 5})
	want.Concelier.Authority.BypassNetworks = append(want.Concelier.Authority.BypassNetworks, netip.MustParsePrefix("172.16.0.0/12"))
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestListGap(t *testing.T) {
	tests := []struct {
		name, file string
		env        []string
		want       string
	}{
		{"past the file's list", "testdata/one_domain.yaml", []string{"CONCELIER__MIRROR__DOMAINS__2__ID=x"},
			"CONCELIER__MIRROR__DOMAINS__2: index out of sequence (have 0..0)"},
		{"empty list", "", []string{"CONCELIER__MIRROR__DOMAINS__1__ID=x"},
			"CONCELIER__MIRROR__DOMAINS__1: index out of sequence (have none)"},
		{"one gap, two keys past it", "", []string{
			"CONCELIER__MIRROR__DOMAINS__0__ID=a",
			"CONCELIER__MIRROR__DOMAINS__2__ID=c",
			"CONCELIER__MIRROR__DOMAINS__2__DISPLAYNAME=C",
			"CONCELIER__MIRROR__DOMAINS__3__ID=d",
		}, "CONCELIER__MIRROR__DOMAINS__2: index out of sequence (have 0..0)\n" +
			"CONCELIER__MIRROR__DOMAINS__3: index out of sequence (have 0..0)"},
		{"scalar list", "", []string{"CONCELIER__AUTHORITY__BYPASSNETWORKS__5=10.0.0.0/8"},
			"CONCELIER__AUTHORITY__BYPASSNETWORKS__5: index out of sequence (have none)"},
		{"huge index", "", []string{"CONCELIER__AUTHORITY__BYPASSNETWORKS__99999999999999999999=10.0.0.0/8"},
			`CONCELIER__AUTHORITY__BYPASSNETWORKS__99999999999999999999: invalid list index "99999999999999999999"`},
		{"leading zero", "", []string{"CONCELIER__MIRROR__DOMAINS__00__ID=x"},
			`CONCELIER__MIRROR__DOMAINS__00__ID: invalid list index "00"`},
		{"not a number", "", []string{"CONCELIER__MIRROR__DOMAINS__PRIMARY__ID=x"},
			`CONCELIER__MIRROR__DOMAINS__PRIMARY__ID: invalid list index "PRIMARY"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Cfg
			if got := errText(Load(&c, tt.file, tt.env)); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestUnknownKeyEnv(t *testing.T) {
	tests := []struct{ env, want string }{
		{"CONCELIER__MIRROR__EXPORTROT=/x",
			"CONCELIER__MIRROR__EXPORTROT: unknown key (did you mean CONCELIER__MIRROR__EXPORTROOT?)"},
		{"CONCELIER__MIROR__ENABLED=true",
			"CONCELIER__MIROR__ENABLED: unknown key (did you mean CONCELIER__MIRROR__ENABLED?)"},
		{"concelier__mirror__domains__0__dispalyname=x",
			"CONCELIER__MIRROR__DOMAINS__0__DISPALYNAME: unknown key (did you mean CONCELIER__MIRROR__DOMAINS__0__DISPLAYNAME?)"},
		{"CONCELIER__MIRROR__DOMAINS__3__DISPALYNAME=x", // both problems at once
			"CONCELIER__MIRROR__DOMAINS__3: index out of sequence (have none)\n" +
				"CONCELIER__MIRROR__DOMAINS__3__DISPALYNAME: unknown key (did you mean CONCELIER__MIRROR__DOMAINS__3__DISPLAYNAME?)"},
		{"CONCELIER__MIRROR__EXPORT_ROOT=/x",
			"CONCELIER__MIRROR__EXPORT_ROOT: unknown key (did you mean CONCELIER__MIRROR__EXPORTROOT?)"},
		{"EXCITITOR__ARTIFACTS__FILESYSTEM__ROOTS=/x",
			"EXCITITOR__ARTIFACTS__FILESYSTEM__ROOTS: unknown key (did you mean EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT?)"},
		{"CONCELIER__MIRROR__COLOUR=blue", "CONCELIER__MIRROR__COLOUR: unknown key"},
		{"CONCELIER__MIRROR__=x", "CONCELIER__MIRROR__: unknown key"},
		{"CONCELIER__MIRROR__ENABLED__X=1", "CONCELIER__MIRROR__ENABLED__X: unknown key (CONCELIER__MIRROR__ENABLED is a value, not a section)"},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			var c Cfg
			if got := errText(Load(&c, "", []string{tt.env})); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestUnrelatedEnvIgnored(t *testing.T) {
	env := []string{
		"PATH=/usr/bin", "HOME=/root", "CONCELIER_URL=http://x", "CONCELIERX__MIRROR__ENABLED=maybe",
		"MIRROR__ENABLED=maybe", "=C:=C:\\", "NOEQUALS", "", "LANG=C.UTF-8",
		"CONCELIER__MIRROR__ENABLED=true",
	}
	var c Cfg
	if err := Load(&c, "", env); err != nil {
		t.Fatal(err)
	}
	if !c.Concelier.Mirror.Enabled {
		t.Error("CONCELIER__MIRROR__ENABLED not applied")
	}
}

func TestEnvTypeMismatch(t *testing.T) {
	tests := []struct{ env, want string }{
		{"CONCELIER__MIRROR=on", "CONCELIER__MIRROR: is a section, not a value (set the keys under it)"},
		{"CONCELIER=x", "CONCELIER: is a section, not a value (set the keys under it)"},
		{"CONCELIER__AUTHORITY__BYPASSNETWORKS=10.0.0.0/8",
			"CONCELIER__AUTHORITY__BYPASSNETWORKS: is a list, not a value (set CONCELIER__AUTHORITY__BYPASSNETWORKS__0, CONCELIER__AUTHORITY__BYPASSNETWORKS__1, ...)"},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			var c Cfg
			if got := errText(Load(&c, "", []string{tt.env})); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestEnvNameTwiceInDifferentCase(t *testing.T) {
	var c Cfg
	err := Load(&c, "", []string{"CONCELIER__MIRROR__ENABLED=true", "Concelier__Mirror__Enabled=false"})
	want := "CONCELIER__MIRROR__ENABLED: set twice in the environment, as CONCELIER__MIRROR__ENABLED and Concelier__Mirror__Enabled"
	if got := errText(err); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestLeafTypes(t *testing.T) {
	tests := []struct {
		key, val string
		want     Leaves // on success: the zero Leaves with the one field set
		err      string // on failure: the error (env form, without position)
	}{
		{key: "S", val: "  spaced  ", want: Leaves{S: "  spaced  "}},
		{key: "S", val: "", want: Leaves{}},
		{key: "B", val: "true", want: Leaves{B: true}},
		{key: "B", val: "TRUE", want: Leaves{B: true}},
		{key: "B", val: "Yes", want: Leaves{B: true}},
		{key: "B", val: "1", want: Leaves{B: true}},
		{key: "B", val: " true ", want: Leaves{B: true}},
		{key: "B", val: "False", want: Leaves{}},
		{key: "B", val: "no", want: Leaves{}},
		{key: "B", val: "0", want: Leaves{}},
		{key: "B", val: "maybe", err: `LEAVES__B: invalid boolean "maybe"`},
		{key: "B", val: "on", err: `LEAVES__B: invalid boolean "on"`},
		{key: "B", val: "", err: `LEAVES__B: invalid boolean ""`},
		{key: "I", val: "-42", want: Leaves{I: -42}},
		{key: "I", val: "+7", want: Leaves{I: 7}},
		{key: "I", val: "010", want: Leaves{I: 10}},
		{key: "I", val: "ten", err: `LEAVES__I: invalid integer "ten"`},
		{key: "I", val: "1.5", err: `LEAVES__I: invalid integer "1.5"`},
		{key: "I", val: "0x10", err: `LEAVES__I: invalid integer "0x10"`},
		{key: "I", val: "1_000", err: `LEAVES__I: invalid integer "1_000"`},
		{key: "I", val: "", err: `LEAVES__I: invalid integer ""`},
		{key: "I8", val: "-128", want: Leaves{I8: -128}},
		{key: "I8", val: "128", err: `LEAVES__I8: integer "128" out of range for int8 (-128..127)`},
		{key: "I16", val: "32767", want: Leaves{I16: 32767}},
		{key: "I16", val: "-32769", err: `LEAVES__I16: integer "-32769" out of range for int16 (-32768..32767)`},
		{key: "I32", val: "2147483647", want: Leaves{I32: 2147483647}},
		{key: "I32", val: "2147483648", err: `LEAVES__I32: integer "2147483648" out of range for int32 (-2147483648..2147483647)`},
		{key: "I64", val: "9223372036854775807", want: Leaves{I64: 9223372036854775807}},
		{key: "I64", val: "9223372036854775808", err: `LEAVES__I64: integer "9223372036854775808" out of range for int64 (-9223372036854775808..9223372036854775807)`},
		{key: "U", val: "42", want: Leaves{U: 42}},
		{key: "U", val: "+3", want: Leaves{U: 3}},
		{key: "U", val: "-0", want: Leaves{}},
		{key: "U8", val: "255", want: Leaves{U8: 255}},
		{key: "U8", val: "256", err: `LEAVES__U8: integer "256" out of range for uint8 (0..255)`},
		{key: "U8", val: "-1", err: `LEAVES__U8: integer "-1" out of range for uint8 (0..255)`},
		{key: "U16", val: "+-5", err: `LEAVES__U16: invalid integer "+-5"`},
		{key: "U16", val: "five", err: `LEAVES__U16: invalid integer "five"`},
		{key: "U32", val: "4294967295", want: Leaves{U32: 4294967295}},
		{key: "U64", val: "18446744073709551615", want: Leaves{U64: 18446744073709551615}},
		{key: "U64", val: "18446744073709551616", err: `LEAVES__U64: integer "18446744073709551616" out of range for uint64 (0..18446744073709551615)`},
		{key: "PORT", val: "8080", want: Leaves{Port: 8080}},
		{key: "PORT", val: "70000", err: `LEAVES__PORT: integer "70000" out of range for uint16 (0..65535)`},
		{key: "F32", val: "1.5", want: Leaves{F32: 1.5}},
		{key: "F32", val: "1e39", err: `LEAVES__F32: number "1e39" out of range for float32`},
		{key: "F64", val: "-2.5e3", want: Leaves{F64: -2500}},
		{key: "F64", val: "NaN", err: `LEAVES__F64: invalid number "NaN"`},
		{key: "F64", val: "inf", err: `LEAVES__F64: invalid number "inf"`},
		{key: "F64", val: "1,5", err: `LEAVES__F64: invalid number "1,5"`},
		{key: "D", val: "30s", want: Leaves{D: 30 * time.Second}},
		{key: "D", val: "1h30m", want: Leaves{D: 90 * time.Minute}},
		{key: "D", val: "250ms", want: Leaves{D: 250 * time.Millisecond}},
		{key: "D", val: "0", want: Leaves{}},
		{key: "D", val: "00:00:30", want: Leaves{D: 30 * time.Second}},
		{key: "D", val: "00:30", want: Leaves{D: 30 * time.Minute}},
		{key: "D", val: "1:02:03", want: Leaves{D: time.Hour + 2*time.Minute + 3*time.Second}},
		{key: "D", val: "1.12:00:00", want: Leaves{D: 36 * time.Hour}},
		{key: "D", val: "00:00:01.5", want: Leaves{D: 1500 * time.Millisecond}},
		{key: "D", val: "00:00:00.0000001", want: Leaves{D: 100 * time.Nanosecond}},
		{key: "D", val: "-00:01:00", want: Leaves{D: -time.Minute}},
		{key: "D", val: "30", err: `LEAVES__D: invalid duration "30" (missing unit: write e.g. 30s or 00:00:30)`},
		{key: "D", val: "thirty", err: `LEAVES__D: invalid duration "thirty" (want Go syntax like 30s or 1h30m, or hh:mm:ss)`},
		{key: "D", val: "24:00:00", err: `LEAVES__D: invalid duration "24:00:00" (want hh:mm:ss with hours 0-23, minutes and seconds 0-59; days as d.hh:mm:ss)`},
		{key: "D", val: "00:60:00", err: `LEAVES__D: invalid duration "00:60:00" (want hh:mm:ss with hours 0-23, minutes and seconds 0-59; days as d.hh:mm:ss)`},
		{key: "D", val: "00:00:30:00", err: `LEAVES__D: invalid duration "00:00:30:00" (want hh:mm:ss with hours 0-23, minutes and seconds 0-59; days as d.hh:mm:ss)`},
		{key: "D", val: "106752.00:00:00", err: `LEAVES__D: invalid duration "106752.00:00:00" (want hh:mm:ss with hours 0-23, minutes and seconds 0-59; days as d.hh:mm:ss)`},
		{key: "P", val: "10.0.0.0/8", want: Leaves{P: netip.MustParsePrefix("10.0.0.0/8")}},
		{key: "P", val: "10.0.0.0/33", err: `LEAVES__P: invalid netip.Prefix "10.0.0.0/33": netip.ParsePrefix("10.0.0.0/33"): prefix length out of range`},
		{key: "P", val: "10.0.0.1", err: `LEAVES__P: invalid netip.Prefix "10.0.0.1": netip.ParsePrefix("10.0.0.1"): no '/'`},
		{key: "A", val: "::1", want: Leaves{A: netip.MustParseAddr("::1")}},
		{key: "A", val: "300.0.0.1", err: `LEAVES__A: invalid netip.Addr "300.0.0.1": ParseAddr("300.0.0.1"): IPv4 field has value >255`},
		{key: "L", val: "warn", want: Leaves{L: slog.LevelWarn}},
		{key: "L", val: "loud", err: `LEAVES__L: invalid slog.Level "loud": slog: level string "loud": unknown name`},
		{key: "PB", val: "yes", want: Leaves{PB: ptr(true)}},
		{key: "PB", val: "no", want: Leaves{PB: ptr(false)}},
		{key: "PB", val: "", want: Leaves{}},
		{key: "PB", val: "maybe", err: `LEAVES__PB: invalid boolean "maybe"`},
		{key: "PI", val: "0", want: Leaves{PI: ptr(0)}},
		{key: "PI", val: "x", err: `LEAVES__PI: invalid integer "x"`},
		{key: "PD", val: "00:00:05", want: Leaves{PD: ptr(5 * time.Second)}},
		{key: "PP", val: "192.168.0.0/16", want: Leaves{PP: ptr(netip.MustParsePrefix("192.168.0.0/16"))}},
		{key: "PP", val: "nope", err: `LEAVES__PP: invalid netip.Prefix "nope": netip.ParsePrefix("nope"): no '/'`},
		{key: "PS", val: "x", want: Leaves{PS: ptr("x")}},
		{key: "OTHER_NAME", val: "tagged", want: Leaves{Renamed: "tagged"}},
		{key: "RENAMED", val: "x", err: `LEAVES__RENAMED: unknown key`},
		{key: "SKIPPED", val: "x", err: `LEAVES__SKIPPED: unknown key`},
		{key: "HIDDEN", val: "x", err: `LEAVES__HIDDEN: unknown key`},
		{key: "NESTED__X", val: "3", want: Leaves{Nested: &struct{ X int }{3}}},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.val, func(t *testing.T) {
			t.Run("env", func(t *testing.T) {
				var got LeafCfg
				err := Load(&got, "", []string{"LEAVES__" + tt.key + "=" + tt.val})
				check(t, got, err, tt.want, tt.err)
			})
			t.Run("yaml", func(t *testing.T) {
				// LEAVES__NESTED__X becomes nested mappings; the value is on line 2 only
				// for single-segment keys, which all the error cases are.
				yml, indent := "leaves:\n", "  "
				segs := strings.Split(strings.ToLower(tt.key), "__")
				for _, seg := range segs[:len(segs)-1] {
					yml += indent + seg + ":\n"
					indent += "  "
				}
				yml += fmt.Sprintf("%s%s: %q\n", indent, segs[len(segs)-1], tt.val)
				path := writeFile(t, yml)
				var got LeafCfg
				err := Load(&got, path, nil)
				wantErr := tt.err
				if wantErr != "" {
					wantErr += fmt.Sprintf(" (%s:2)", path)
				}
				check(t, got, err, tt.want, wantErr)
			})
		})
	}
}

func check(t *testing.T, got LeafCfg, err error, want Leaves, wantErr string) {
	t.Helper()
	if errText(err) != wantErr {
		t.Fatalf("error:\ngot  %s\nwant %s", errText(err), wantErr)
	}
	if err != nil {
		want = Leaves{} // dst is untouched on error
	}
	if !reflect.DeepEqual(got.Leaves, want) {
		t.Errorf("got  %+v\nwant %+v", got.Leaves, want)
	}
}

func TestLists(t *testing.T) {
	var c LeafCfg
	err := Load(&c, "", []string{
		"LEAVES__REFRESHTOKEN__0=1", "LEAVES__REFRESHTOKEN__1=2",
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{1, 2}; !reflect.DeepEqual(c.Leaves.RefreshToken, want) {
		t.Errorf("got %v, want %v", c.Leaves.RefreshToken, want)
	}
}

func TestTextUnmarshalerList(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want []netip.Prefix
		err  string
	}{
		{"good", []string{"CONCELIER__AUTHORITY__BYPASSNETWORKS__0=10.0.0.0/8", "CONCELIER__AUTHORITY__BYPASSNETWORKS__1= 2001:db8::/32 "},
			[]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}, ""},
		{"bad", []string{"CONCELIER__AUTHORITY__BYPASSNETWORKS__0=10.0.0.0/8", "CONCELIER__AUTHORITY__BYPASSNETWORKS__1=10.0.0.0/99"},
			nil, `CONCELIER__AUTHORITY__BYPASSNETWORKS__1: invalid netip.Prefix "10.0.0.0/99": netip.ParsePrefix("10.0.0.0/99"): prefix length out of range`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Cfg
			err := Load(&c, "", tt.env)
			if errText(err) != tt.err {
				t.Fatalf("got  %s\nwant %s", errText(err), tt.err)
			}
			if !reflect.DeepEqual(c.Concelier.Authority.BypassNetworks, tt.want) {
				t.Errorf("got %v, want %v", c.Concelier.Authority.BypassNetworks, tt.want)
			}
		})
	}
}

func TestCaseInsensitiveYAML(t *testing.T) {
	path := writeFile(t, `
CONCELIER:
  Mirror:
    ENABLED: True
    exportroot: /a
    ExportRoot_Unused: ~
  AUTHORITY:
    bypassNetworks: [10.0.0.0/8]
excititor:
  ARTIFACTS:
    fileSystem: {ROOT: /b}
`)
	var c Cfg
	err := Load(&c, path, nil)
	want := fmt.Sprintf("CONCELIER__MIRROR__EXPORTROOT_UNUSED: unknown key (%s:6)", path)
	if errText(err) != want {
		t.Fatalf("got  %s\nwant %s", errText(err), want)
	}
	path = writeFile(t, strings.Replace(mustRead(t, path), "    ExportRoot_Unused: ~\n", "", 1))
	if err := Load(&c, path, nil); err != nil {
		t.Fatal(err)
	}
	if !c.Concelier.Mirror.Enabled || c.Concelier.Mirror.ExportRoot != "/a" ||
		len(c.Concelier.Authority.BypassNetworks) != 1 || c.Excititor.Artifacts.FileSystem.Root != "/b" {
		t.Errorf("got %+v", c)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSecretRedaction(t *testing.T) {
	tests := []struct {
		name, key, val, want string
	}{
		{"int", "LEAVES__APITOKEN", "abc", `LEAVES__APITOKEN: invalid integer <redacted>`},
		{"text unmarshaler detail dropped", "LEAVES__DBPASSWORD", "hunter2", `LEAVES__DBPASSWORD: invalid config.pin <redacted>`},
		{"list element", "LEAVES__REFRESHTOKEN__0", "hunter2", `LEAVES__REFRESHTOKEN__0: invalid integer <redacted>`},
		{"lower-case name", "leaves__apitoken", "999999999999999999999", `LEAVES__APITOKEN: integer <redacted> out of range for int (-9223372036854775808..9223372036854775807)`},
		{"not a secret", "LEAVES__I", "hunter2", `LEAVES__I: invalid integer "hunter2"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c LeafCfg
			got := errText(Load(&c, "", []string{tt.key + "=" + tt.val}))
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
	t.Run("yaml", func(t *testing.T) {
		path := writeFile(t, "leaves:\n  dbPassword: hunter2\n  apiToken: hunter2\n")
		var c LeafCfg
		got := errText(Load(&c, path, nil))
		want := fmt.Sprintf("LEAVES__APITOKEN: invalid integer <redacted> (%s:3)\nLEAVES__DBPASSWORD: invalid config.pin <redacted> (%s:2)", path, path)
		if got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
		if strings.Contains(got, "hunter2") {
			t.Error("secret leaked")
		}
	})
}

func TestMultipleErrorsJoined(t *testing.T) {
	env := []string{
		"CONCELIER__MIRROR__MAXINDEXREQUESTSPERHOUR=ten",
		"CONCELIER__MIRROR__ENABLED=maybe",
		"CONCELIER__MIRROR__EXPORTROT=/x",
		"EXCITITOR__MIRROR__DOMAINS__0__MAXDOWNLOADREQUESTSPERHOUR=lots",
		"CONCELIER__AUTHORITY__BYPASSNETWORKS__0=everyone",
	}
	var c Cfg
	c.Concelier.Mirror.ExportRoot = "/default"
	before := c
	err := Load(&c, "testdata/bad/values.yaml", env)
	want := strings.Join([]string{
		`CONCELIER__AUTHORITY__BYPASSNETWORKS__0: invalid netip.Prefix "everyone": netip.ParsePrefix("everyone"): no '/'`,
		`CONCELIER__MIRROR__ENABLED: invalid boolean "maybe"`,
		`CONCELIER__MIRROR__ENABLED: invalid boolean "sometimes" (testdata/bad/values.yaml:3)`,
		`CONCELIER__MIRROR__EXPORTROT: unknown key (did you mean CONCELIER__MIRROR__EXPORTROOT?)`,
		`CONCELIER__MIRROR__MAXINDEXREQUESTSPERHOUR: invalid integer "ten"`,
		`EXCITITOR__MIRROR__DOMAINS__0__MAXDOWNLOADREQUESTSPERHOUR: invalid integer "lots"`,
		`EXCITITOR__MIRROR__DOMAINS__0__MAXDOWNLOADREQUESTSPERHOUR: invalid integer "many" (testdata/bad/values.yaml:9)`,
		`EXCITITOR__MIRROR__DOMAINS__1__REQUIREAUTHENTICATION: invalid boolean "perhaps" (testdata/bad/values.yaml:11)`,
	}, "\n")
	if got := errText(err); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if u, ok := err.(interface{ Unwrap() []error }); !ok || len(u.Unwrap()) != 8 {
		t.Errorf("want errors.Join of 8 errors, got %T", err)
	}
	if !reflect.DeepEqual(c, before) {
		t.Errorf("dst changed on error: %+v", c)
	}
}

func TestNonexistentFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.yaml")
	var c Cfg
	err := Load(&c, path, []string{"CONCELIER__MIRROR__ENABLED=maybe"})
	want := "CONCELIER__MIRROR__ENABLED: invalid boolean \"maybe\"\nconfig file " + path + ": no such file or directory"
	if errText(err) != want {
		t.Errorf("got:\n%s\nwant:\n%s", errText(err), want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Error("errors.Is(err, fs.ErrNotExist) = false")
	}
	dir := t.TempDir()
	if got, want := errText(Load(&c, dir, nil)), "config file "+dir+": is a directory"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestEmptyFile(t *testing.T) {
	for _, content := range []string{"", "# nothing yet\n", "---\n", "~\n"} {
		t.Run(fmt.Sprintf("%q", content), func(t *testing.T) {
			var c Cfg
			c.Concelier.Mirror.ExportRoot = "/default"
			if err := Load(&c, writeFile(t, content), nil); err != nil {
				t.Fatal(err)
			}
			if c.Concelier.Mirror.ExportRoot != "/default" {
				t.Errorf("default lost: %+v", c)
			}
		})
	}
}

func TestDefaultsKept(t *testing.T) {
	var c Cfg
	c.Concelier.Mirror.MaxIndexRequestsPerHour = 600
	c.Concelier.Mirror.ExportRoot = "/default"
	c.Concelier.Authority.BypassNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	c.Concelier.Mirror.Domains = []Domain{{ID: "d0", DisplayName: "Default"}}
	if err := Load(&c, "", []string{"CONCELIER__MIRROR__ENABLED=true", "CONCELIER__MIRROR__DOMAINS__0__ID=main"}); err != nil {
		t.Fatal(err)
	}
	m := c.Concelier.Mirror
	if !m.Enabled || m.MaxIndexRequestsPerHour != 600 || m.ExportRoot != "/default" ||
		len(c.Concelier.Authority.BypassNetworks) != 1 ||
		!reflect.DeepEqual(m.Domains, []Domain{{ID: "main", DisplayName: "Default"}}) {
		t.Errorf("got %+v", c)
	}
}

// TestNoAliasing: Load never writes through slices or pointers the caller
// holds, whether it succeeds or fails.
func TestNoAliasing(t *testing.T) {
	domains := []Domain{{ID: "d0", RequireAuthentication: ptr(true)}}
	nested := &struct{ X int }{1}
	for _, extra := range []string{"LEAVES__I=1", "LEAVES__I=bad"} {
		t.Run(extra, func(t *testing.T) {
			var c Cfg
			c.Concelier.Mirror.Domains = domains
			if err := Load(&c, "", []string{"CONCELIER__MIRROR__DOMAINS__0__ID=changed", "CONCELIER__MIRROR__DOMAINS__0__REQUIREAUTHENTICATION=false"}); err != nil {
				t.Fatal(err)
			}
			var l LeafCfg
			l.Leaves.Nested = nested
			err := Load(&l, "", []string{"LEAVES__NESTED__X=2", extra})
			if domains[0].ID != "d0" || !*domains[0].RequireAuthentication || nested.X != 1 {
				t.Errorf("caller's values changed: %+v %+v", domains[0], nested)
			}
			if err == nil && l.Leaves.Nested.X != 2 {
				t.Errorf("Nested.X = %d, want 2", l.Leaves.Nested.X)
			}
			if err != nil && l.Leaves.Nested != nested {
				t.Error("dst changed on error")
			}
		})
	}
}

func TestPointerToStructAllocatedOnlyWhenNeeded(t *testing.T) {
	var c LeafCfg
	if err := Load(&c, writeFile(t, "leaves:\n  nested: {}\n  s: x\n"), []string{"LEAVES__I=1"}); err != nil {
		t.Fatal(err)
	}
	if c.Leaves.Nested != nil {
		t.Errorf("Nested allocated without keys: %+v", c.Leaves.Nested)
	}
}

func TestYAMLNull(t *testing.T) {
	var c Cfg
	c.Concelier.Mirror.ExportRoot = "/default"
	c.Concelier.Mirror.Domains = []Domain{{ID: "d0"}}
	c.Concelier.Authority.ClientSecret = "default"
	c.Excititor.Mirror.Enabled = true
	path := writeFile(t, "concelier:\n  mirror:\n    exportRoot:\n    domains: ~\n  authority:\nexcititor:\n  mirror: null\n")
	if err := Load(&c, path, nil); err != nil {
		t.Fatal(err)
	}
	if c.Concelier.Mirror.ExportRoot != "" || c.Concelier.Mirror.Domains != nil ||
		c.Concelier.Authority.ClientSecret != "default" || !c.Excititor.Mirror.Enabled {
		t.Errorf("got %+v", c)
	}
}

func TestSchemaErrors(t *testing.T) {
	type recursive struct {
		Name     string
		Children []recursive
	}
	type Common struct{ Enabled bool }
	tests := []struct {
		name string
		dst  any
		want string
	}{
		{"nil", nil, "config: Load needs a non-nil pointer to a struct, got <nil>"},
		{"not a pointer", Cfg{}, "config: Load needs a non-nil pointer to a struct, got config.Cfg"},
		{"nil pointer", (*Cfg)(nil), "config: Load needs a non-nil pointer to a struct, got *config.Cfg"},
		{"pointer to non-struct", new(int), "config: Load needs a non-nil pointer to a struct, got *int"},
		{"map", &struct{ S struct{ M map[string]int } }{}, "config: S__M: unsupported type map[string]int"},
		{"pointer to pointer", &struct{ S struct{ P **int } }{}, "config: S__P: unsupported type **int (pointers must point to a struct or a value type)"},
		{"recursive", &struct{ R recursive }{}, "config: R__CHILDREN__{n}: unsupported recursive type config.recursive"},
		{"clash", &struct {
			S struct {
				A string
				B string `config:"a"`
			}
		}{}, "config: S__A: fields A and B both map to this key"},
		{"embedded clash", &struct {
			S struct {
				Common
				Enabled bool
			}
		}{}, "config: S__ENABLED: fields Common.Enabled and Enabled both map to this key"},
		{"bad tag", &struct {
			S struct {
				A string `config:"A__B"`
			}
		}{}, `config: S__A: invalid tag config:"A__B" (want letters, digits and single underscores, or "-")`},
		{"numeric tag", &struct {
			S struct {
				A string `config:"0"`
			}
		}{}, `config: S__A: invalid tag config:"0" (want letters, digits and single underscores, or "-")`},
		{"two problems", &struct {
			S struct {
				M map[string]int
				C chan int
			}
		}{}, "config: S__C: unsupported type chan int\nconfig: S__M: unsupported type map[string]int"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errText(Load(tt.dst, "", nil)); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
	t.Run("keys panics", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Error("Keys did not panic")
			}
		}()
		Keys(&struct{ S struct{ M map[string]int } }{})
	})
}

func TestEmbeddedStructFlattened(t *testing.T) {
	type Common struct{ Enabled bool }
	type section struct {
		Common
		Root string
	}
	var c struct{ S section }
	if err := Load(&c, "", []string{"S__ENABLED=true", "S__ROOT=/r"}); err != nil {
		t.Fatal(err)
	}
	if !c.S.Enabled || c.S.Root != "/r" {
		t.Errorf("got %+v", c)
	}
	if got, want := Keys(c), []string{"S__ENABLED", "S__ROOT"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Keys = %v, want %v", got, want)
	}
}

func TestKeys(t *testing.T) {
	mirror := func(p string) []string {
		return []string{
			p + "__MIRROR__ACTIVEEXPORTID",
			p + "__MIRROR__DOMAINS__{n}__DISPLAYNAME",
			p + "__MIRROR__DOMAINS__{n}__ID",
			p + "__MIRROR__DOMAINS__{n}__MAXDOWNLOADREQUESTSPERHOUR",
			p + "__MIRROR__DOMAINS__{n}__REQUIREAUTHENTICATION",
			p + "__MIRROR__ENABLED",
			p + "__MIRROR__EXPORTROOT",
			p + "__MIRROR__MAXINDEXREQUESTSPERHOUR",
			p + "__MIRROR__REQUIREAUTHENTICATION",
		}
	}
	want := []string{
		"CONCELIER__AUTHORITY__ALLOWANONYMOUSFALLBACK",
		"CONCELIER__AUTHORITY__BYPASSNETWORKS__{n}",
		"CONCELIER__AUTHORITY__CLIENTSECRET",
		"CONCELIER__AUTHORITY__ENABLED",
	}
	want = append(want, mirror("CONCELIER")...)
	want = append(want, "EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT")
	want = append(want, mirror("EXCITITOR")...)
	for _, v := range []any{Cfg{}, &Cfg{}} {
		if got := Keys(v); !reflect.DeepEqual(got, want) {
			t.Errorf("Keys(%T):\ngot  %q\nwant %q", v, got, want)
		}
	}
	// Every key Keys lists is one Load accepts.
	var env []string
	for _, k := range want {
		env = append(env, strings.ReplaceAll(k, "{n}", "0")+"=1")
	}
	env = append(env, "CONCELIER__AUTHORITY__BYPASSNETWORKS__0=10.0.0.0/8")
	var c Cfg
	if err := Load(&c, "", env); err != nil {
		t.Errorf("Load with every key: %v", err)
	}
	lk := Keys(LeafCfg{})
	for _, k := range []string{"LEAVES__OTHER_NAME", "LEAVES__NESTED__X", "LEAVES__REFRESHTOKEN__{n}", "LEAVES__PB"} {
		if !contains(lk, k) {
			t.Errorf("Keys(LeafCfg{}) lacks %s", k)
		}
	}
	for _, k := range []string{"LEAVES__SKIPPED", "LEAVES__RENAMED", "LEAVES__HIDDEN"} {
		if contains(lk, k) {
			t.Errorf("Keys(LeafCfg{}) has %s", k)
		}
	}
	for _, bad := range []any{nil, 1, new(int)} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Keys(%T) did not panic", bad)
				}
			}()
			Keys(bad)
		}()
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"ABC", "", 3}, {"", "ABC", 3}, {"EXPORTROT", "EXPORTROOT", 1},
		{"MIRORR", "MIRROR", 1}, {"KITTEN", "SITTING", 3}, {"AB", "BA", 1},
	}
	for _, tt := range tests {
		t.Run(tt.a+"/"+tt.b, func(t *testing.T) {
			if got := distance(tt.a, tt.b); got != tt.want {
				t.Errorf("distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

func TestYAMLMergeAndAliases(t *testing.T) {
	path := writeFile(t, `
defaults:
concelier:
  mirror: &base
    enabled: true
    exportRoot: /base
    maxIndexRequestsPerHour: 10
excititor:
  mirror:
    <<: [{exportRoot: /first, maxIndexRequestsPerHour: 20}, *base]
    MaxIndexRequestsPerHour: 30
    domains:
      - &dom {id: shared, displayName: Shared}
      - *dom
`)
	var c Cfg
	err := Load(&c, path, nil)
	if want := fmt.Sprintf("DEFAULTS: unknown key (%s:2)", path); errText(err) != want {
		t.Fatalf("got  %s\nwant %s", errText(err), want)
	}
	path = writeFile(t, strings.Replace(mustRead(t, path), "defaults:\n", "", 1))
	if err := Load(&c, path, nil); err != nil {
		t.Fatal(err)
	}
	m := c.Excititor.Mirror
	// Explicit keys beat merged ones; earlier merged mappings beat later ones.
	if !m.Enabled || m.ExportRoot != "/first" || m.MaxIndexRequestsPerHour != 30 ||
		!reflect.DeepEqual(m.Domains, []Domain{{ID: "shared", DisplayName: "Shared"}, {ID: "shared", DisplayName: "Shared"}}) {
		t.Errorf("got %+v", m)
	}
}

func TestYAMLStructureErrors(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"complex key", "concelier:\n  ? [a, b]\n  : 1\n", "CONCELIER: mapping keys must be plain strings (%s:2)"},
		{"merge list of scalars", "concelier:\n  mirror:\n    <<: [1]\n", "CONCELIER__MIRROR: merge key (<<) needs a mapping or a list of mappings (%s:3)"},
		{"top-level typo", "concelir:\n  mirror: {}\n", "CONCELIR: unknown key (did you mean CONCELIER?) (%s:1)"},
		{"top-level scalar", "just text\n", "%s:1: the top level must be a mapping of sections"},
		{"alias bomb", aliasBomb(), "%s: too many YAML nodes (alias expansion?)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.yaml)
			var c Cfg
			if got, want := errText(Load(&c, path, nil)), fmt.Sprintf(tt.want, path); got != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
}

// aliasBomb is a "billion laughs" document: 10^9 nodes once aliases are
// expanded.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [", i, i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("concelier:\n  authority:\n    bypassNetworks: *a9\n")
	return b.String()
}
