package policy

import "testing"

func TestCheck(t *testing.T) {
	p := New([]string{"primary"})
	tests := []struct {
		path   string
		kind   Kind
		domain string
	}{
		{"/concelier/exports/index.json", Index, ""},
		{"/concelier/exports/mirror/primary/manifest.json", Download, "primary"},
		{"/concelier/exports/mirror/primary/bundle.json", Download, "primary"},
		{"/concelier/exports/mirror/primary/bundle.json.jws", Download, "primary"},
		{"/excititor/mirror/primary/index", Index, "primary"},
		{"/excititor/mirror/primary/export/k1.json", Download, "primary"},
		{"/excititor/mirror/primary/export/k1.json/signature", Download, "primary"},
		// another domain
		{"/concelier/exports/mirror/community/bundle.json", Refused, ""},
		{"/excititor/mirror/community/index", Refused, ""},
		// other spellings of another domain's path
		{"/concelier/exports/mirror/%63ommunity/bundle.json", Refused, ""},
		{"/concelier/exports/mirror/primary/../community/bundle.json", Refused, ""},
		{"/concelier/exports/mirror/primary/%2e%2e/community/bundle.json", Refused, ""},
		{"/concelier/exports/mirror/primary%2f..%2fcommunity/bundle.json", Refused, ""},
		{"/concelier/exports/mirror/primary/./bundle.json", Refused, ""},
		{"/concelier/exports/mirror//primary/bundle.json", Refused, ""},
		{"/concelier/exports/mirror/primary/bundle.json/", Refused, ""},
		{"/concelier/exports/mirror/primary\\..\\community/bundle.json", Refused, ""},
		{"/concelier/exports/mirror/Primary/bundle.json", Refused, ""},
		// not the contract
		{"/", Refused, ""},
		{"", Refused, ""},
		{"/metrics", Refused, ""},
		{"/health/ready", Refused, ""},
		{"/concelier/exports/mirror/primary/other.json", Refused, ""},
		{"/concelier/exports/mirror/primary", Refused, ""},
		{"/excititor/mirror/primary/export/", Refused, ""},
		{"/excititor/mirror/primary/export/k/other", Refused, ""},
		{"/excititor/mirror/primary/other", Refused, ""},
		{"concelier/exports/index.json", Refused, ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got := p.Check(tt.path)
			if got.Kind != tt.kind || got.Domain != tt.domain {
				t.Fatalf("Check(%q) = %+v, want kind %d domain %q", tt.path, got, tt.kind, tt.domain)
			}
		})
	}
	if (&Policy{}).Check("/concelier/exports/mirror/primary/bundle.json").Kind != Refused {
		t.Fatal("zero policy allowed a domain path")
	}
}
