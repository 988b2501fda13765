package cache

// Generation returns the id of the Concelier export generation the cache
// currently answers unversioned requests from, or "" while none is known
// (no index fetched yet, or an origin that names no export id). For
// monitoring: stella_mirror_gateway_export_generation_info and /status.
func (c *Cache) Generation() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen == nil {
		return ""
	}
	return c.gen.id
}
