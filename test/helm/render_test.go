package helm

import "testing"

// TestRenderDefaults renders the chart with its default values and decodes
// every document strictly.
func TestRenderDefaults(t *testing.T) {
	m := Render(t, nil, nil)
	for _, name := range []string{Fullname + "-gateway", Fullname + "-origin"} {
		if m.Deployment(name) == nil {
			t.Errorf("no Deployment %s; rendered: %v", name, m.Kinds())
		}
	}
	if m.CronJob(Fullname+"-sync") == nil {
		t.Errorf("no CronJob %s-sync; rendered: %v", Fullname, m.Kinds())
	}
	t.Logf("%d objects: %v", m.Count(), m.Kinds())
}

// TestDecodeRejectsUnknownFieldsAndKinds checks that Decode is strict.
func TestDecodeRejectsUnknownFieldsAndKinds(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndatta: {a: b}\n",
		"unknown kind":  "apiVersion: example.org/v1\nkind: Widget\nmetadata: {name: x}\n",
		"duplicate key": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\ndata: {c: d}\n",
		"bad quantity":  "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: x}\nspec: {resources: {requests: {storage: lots}}}\n",
		"cert field":    "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: x}\nspec: {secretName: s, dnsNames: [a], issuerRef: {name: i}, dnsName: a}\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Decode([]byte("---\n" + doc)); err == nil {
				t.Fatalf("Decode accepted %q", doc)
			} else {
				t.Logf("rejected: %v", err)
			}
		})
	}
}
