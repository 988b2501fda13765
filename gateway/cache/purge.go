package cache

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Purge removes the stored objects of path: the key equal to path and every
// key of path with a query. Fills in progress (for any key) are not stored,
// and requests after the purge do not join those for path: they fetch
// anew. For an unversioned Concelier file it removes the object the path is
// answered from: the current generation's pinned one. It returns the
// number of objects removed.
func (c *Cache) Purge(path string) int {
	pinned := ""
	if unversionedFile(path) {
		c.mu.Lock()
		if c.gen != nil {
			pinned = pinnedKey(c.gen.id, path)
		}
		c.mu.Unlock()
	}
	return c.purge(func(key string) bool {
		return key == path || strings.HasPrefix(key, path+"?") || (pinned != "" && key == pinned)
	})
}

// PurgeAll removes every stored object and keeps fills in progress from
// being stored. It returns the number of objects removed.
func (c *Cache) PurgeAll() int {
	return c.purge(func(string) bool { return true })
}

func (c *Cache) purge(match func(string) bool) int {
	var victims []*entry
	c.mu.Lock()
	c.epoch++
	// Matching fills in progress go on for the clients already reading
	// them, but later requests do not join them: they start a new fill.
	for key := range c.flights {
		if match(key) {
			delete(c.flights, key)
		}
	}
	for key, e := range c.entries {
		if match(key) {
			c.unlinkLocked(e)
			victims = append(victims, e)
		}
	}
	c.mu.Unlock()
	c.removeFiles(victims)
	return len(victims)
}

// PurgeHandler is the admin endpoint that purges the cache. The gateway
// mounts it on its admin listener, behind its admin authentication; the
// handler itself checks nothing but the request's form.
//
//	POST (or DELETE, or PURGE) ?path=/concelier/exports/index.json   one path (with any query)
//	POST (or DELETE, or PURGE) ?all=true                              everything
//
// It answers 200 with {"purged": N}, 400 for a request naming neither
// (or both), and 405 for other methods.
func (c *Cache) PurgeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		switch r.Method {
		case http.MethodPost, http.MethodDelete, "PURGE":
		default:
			w.Header().Set("Allow", "POST, DELETE, PURGE")
			w.WriteHeader(http.StatusMethodNotAllowed)
			json.NewEncoder(w).Encode(map[string]string{"error": "use POST, DELETE or PURGE"})
			return
		}
		q := r.URL.Query()
		path, all := q.Get("path"), q.Get("all")
		var n int
		switch {
		case all == "true" && path == "":
			n = c.PurgeAll()
		case path != "" && all == "" && strings.HasPrefix(path, "/"):
			n = c.Purge(path)
		default:
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"error": "give either path=/absolute/path or all=true"})
			return
		}
		json.NewEncoder(w).Encode(map[string]int{"purged": n})
	})
}
