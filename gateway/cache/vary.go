package cache

import (
	"net/http"
	"strings"
)

// Vary (RFC 9111 section 4.1). A response with Vary is stored as one
// variant of its URL, under the key Key(url) + varySep + the values the
// request had for the fields Vary lists; c.varies maps the URL's key to
// the fields of its latest stored variant, so that a later request is
// looked up under its own variant key. Accept-Encoding creates no
// variants: the cache always fetches the identity bytes (upstreamRequest),
// which every client accepts. At most MaxVariants variants are kept per
// URL, the oldest dropped first. Vary: * is never stored.

// MaxVariants bounds the stored variants of one URL.
const MaxVariants = 8

// varyFields are the canonical field names h's Vary lists, Accept-Encoding
// left out; nil without any.
func varyFields(h http.Header) []string {
	var out []string
	for _, line := range h["Vary"] {
		for _, f := range strings.Split(line, ",") {
			f = http.CanonicalHeaderKey(strings.TrimSpace(f))
			if f == "" || f == "Accept-Encoding" {
				continue
			}
			dup := false
			for _, o := range out {
				dup = dup || o == f
			}
			if !dup {
				out = append(out, f)
			}
		}
	}
	return out
}

// variantKey is the key of the variant of base that a request with header
// h selects by fields. An absent field and an empty one differ.
func variantKey(base string, fields []string, h http.Header) string {
	var b strings.Builder
	b.WriteString(base)
	for _, f := range fields {
		b.WriteString(varySep)
		vv := h[f]
		if vv == nil {
			b.WriteString("\x01")
			continue
		}
		parts := make([]string, 0, len(vv))
		for _, v := range vv {
			for _, p := range strings.Split(v, ",") {
				parts = append(parts, strings.TrimSpace(p))
			}
		}
		b.WriteString(strings.Join(parts, ","))
	}
	return b.String()
}

// baseKey is the URL's key of a variant key.
func baseKey(key string) string {
	base, _, _ := strings.Cut(key, varySep)
	return base
}

// requestKey is the key a request for the URL key is looked up under: its
// variant's when the URL's stored responses vary.
func (c *Cache) requestKey(key string, h http.Header) string {
	c.mu.Lock()
	fields := c.varies[key]
	c.mu.Unlock()
	if fields == nil {
		return key
	}
	return variantKey(key, fields, h)
}

// noteVariantLocked records a stored entry's place among its URL's
// variants, and returns the entries it displaces: a variant beyond
// MaxVariants, or the URL's response without Vary; or, for a response
// without Vary, every variant of its URL. c.mu is held.
func (c *Cache) noteVariantLocked(e *entry) (victims []*entry) {
	if len(e.meta.Vary) == 0 {
		// The URL no longer varies: its variants are gone with it.
		for _, k := range c.variants[e.meta.Key] {
			if v := c.entries[k]; v != nil {
				c.unlinkLocked(v)
				victims = append(victims, v)
			}
		}
		delete(c.varies, e.meta.Key)
		delete(c.variants, e.meta.Key)
		return victims
	}
	base := baseKey(e.meta.Key)
	c.varies[base] = e.meta.Vary
	if old := c.entries[base]; old != nil {
		c.unlinkLocked(old)
		victims = append(victims, old)
	}
	keys := c.variants[base][:0:0]
	for _, k := range c.variants[base] {
		if k != e.meta.Key && c.entries[k] != nil {
			keys = append(keys, k)
		}
	}
	keys = append(keys, e.meta.Key)
	for len(keys) > MaxVariants {
		if v := c.entries[keys[0]]; v != nil {
			c.unlinkLocked(v)
			victims = append(victims, v)
		}
		keys = keys[1:]
	}
	c.variants[base] = keys
	return victims
}
