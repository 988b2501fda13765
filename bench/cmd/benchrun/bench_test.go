//go:build unix

package main

import (
	"testing"
)

func TestABBA(t *testing.T) {
	a, b := &server{name: "a"}, &server{name: "b"}
	tests := []struct {
		rounds int
		want   string
	}{
		{1, "ab"},
		{2, "abba"},
		{3, "abbaab"},
		{4, "abbaabba"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			got := ""
			for _, s := range abba(a, b, tt.rounds) {
				got += s.name
			}
			if got != tt.want {
				t.Errorf("abba(%d) = %s, want %s", tt.rounds, got, tt.want)
			}
		})
	}
}
