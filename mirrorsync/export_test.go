package mirrorsync

import "io"

// SetWriteHook wraps every file write of runs with o (tests inject disk
// full through it).
func SetWriteHook(o *Options, wrap func(io.Writer) io.Writer) { o.wrapWriter = wrap }

// SetStatfs replaces the free-space query of runs with o.
func SetStatfs(o *Options, f func(dir string) (avail, block uint64, err error)) { o.statfs = f }
