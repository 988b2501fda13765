package origin

import (
	"os"
	"strings"
	"testing"
)

// TestConfigurationReferenceListsEveryKey: docs/configuration.md names
// every key the origin accepts.
func TestConfigurationReferenceListsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range ConfigKeys() {
		if !strings.Contains(string(data), "`"+k+"`") {
			t.Errorf("docs/configuration.md does not list %s", k)
		}
	}
}
