package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// TestLimit: bodies over the object limit are refused with 413, uploads
// past the total budget with 507, and what fits is stored and served.
func TestLimit(t *testing.T) {
	backend := s3mem.New()
	if err := backend.CreateBucket("b"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(limit(gofakes3.New(backend).Server(), 10, &uploadBudget{left: 15}))
	defer srv.Close()
	put := func(key, body string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPut, srv.URL+"/b/"+key, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		key, body string
		want      int
	}{
		{"a", "0123456789", http.StatusOK},                       // 10 of 10, 10 of 15
		{"big", "0123456789A", http.StatusRequestEntityTooLarge}, // over the object limit
		{"c", "012345", http.StatusInsufficientStorage},          // 16 of 15
		{"d", "01234", http.StatusOK},                            // 15 of 15
	} {
		if got := put(tc.key, tc.body); got != tc.want {
			t.Errorf("PUT %s (%d bytes): HTTP %d, want %d", tc.key, len(tc.body), got, tc.want)
		}
	}
	resp, err := http.Get(srv.URL + "/b/a")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != 10 {
		t.Errorf("GET a: HTTP %d, %d bytes; want 200, 10 bytes", resp.StatusCode, resp.ContentLength)
	}
}
