//go:build linux

package dos

import (
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// TestEncodeOnceResendable: a block from encodeOnce decodes to the same
// fields when a decoder reads it a second time, its table already filled
// by the first (the attacks resend it on one connection).
func TestEncodeOnceResendable(t *testing.T) {
	big := hpack.HeaderField{Name: "x-bomb", Value: strings.Repeat("d", 4000)}
	fields := requestFields(indexPath, basic("u", "p"))
	for range 100 {
		fields = append(fields, big)
	}
	block := encodeOnce(fields)
	if len(block) > 4500 {
		t.Fatalf("block of %d bytes: the repeated field was not referenced from the table", len(block))
	}
	dec := hpack.NewDecoder(4096, nil)
	dec.SetMaxStringLength(1 << 20)
	for round := range 2 {
		got, err := dec.DecodeFull(block)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if len(got) != len(fields) {
			t.Fatalf("round %d: %d fields, want %d", round, len(got), len(fields))
		}
		for i := range got {
			if got[i].Name != fields[i].Name || got[i].Value != fields[i].Value {
				t.Fatalf("round %d: field %d is %s, want %s", round, i, got[i].Name, fields[i].Name)
			}
		}
	}
}
