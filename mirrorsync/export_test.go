package mirrorsync

import "io"

// SetWriteHook wraps every file write of runs with o (tests inject disk
// full through it).
func SetWriteHook(o *Options, wrap func(io.Writer) io.Writer) { o.wrapWriter = wrap }
