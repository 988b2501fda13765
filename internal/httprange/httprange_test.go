package httprange

import (
	"fmt"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ContentRange
		ok   bool
	}{
		{"bytes 0-0/1", ContentRange{0, 0, 1}, true},
		{"bytes 25165824-50331647/50331648", ContentRange{25165824, 50331647, 50331648}, true},
		{"bytes 10-19/*", ContentRange{10, 19, -1}, true},
		{"bytes 10-19/19", ContentRange{}, false}, // last beyond the length
		{"bytes 20-19/40", ContentRange{}, false}, // last before first
		{"bytes -1-19/40", ContentRange{}, false},
		{"bytes +1-19/40", ContentRange{}, false},
		{"bytes */40", ContentRange{}, false}, // the 416 form
		{"bytes 1-2", ContentRange{}, false},
		{"items 1-2/3", ContentRange{}, false},
		{"bytes 1-2/3 ", ContentRange{}, false},
		{"bytes 1-99999999999999999999/*", ContentRange{}, false},
		{"", ContentRange{}, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Parse(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("Parse(%q) = %+v, %v; want %+v, ok=%v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-0/1", "bytes 10-19/*", "bytes 5-4/9", "bytes */9", "bytes 1-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		cr, err := Parse(v)
		if err != nil {
			return
		}
		if cr.First < 0 || cr.Last < cr.First || cr.Complete != -1 && cr.Last >= cr.Complete {
			t.Fatalf("Parse(%q) = %+v: inconsistent", v, cr)
		}
		canon := fmt.Sprintf("bytes %d-%d/%d", cr.First, cr.Last, cr.Complete)
		if cr.Complete < 0 {
			canon = fmt.Sprintf("bytes %d-%d/*", cr.First, cr.Last)
		}
		if again, err := Parse(canon); err != nil || again != cr {
			t.Fatalf("Parse(%q) = %+v, but its canonical form %q gives %+v, %v", v, cr, canon, again, err)
		}
	})
}
