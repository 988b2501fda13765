package logging

import (
	"context"
	"io"
	"log/slog"
)

// Common field names, one schema for every component's log lines (JSON by
// default): time, level and msg come from slog; the others are added by
// the code that knows them.
const (
	KeyComponent = "component" // origin, gateway, sync, cache, …
	KeyExportID  = "export_id"
	KeySite      = "site"
	KeyUser      = "user"
	KeyDuration  = "duration_s" // seconds, a number
)

// NewComponent is New with a "component" field on every line: name,
// unless the line or a logger derived with With already names its own
// component (the gateway's cache logs "component":"cache"), so no line
// carries the key twice.
func NewComponent(w io.Writer, format, level, name string) (*slog.Logger, error) {
	l, err := New(w, format, level)
	if err != nil {
		return nil, err
	}
	return slog.New(&componentHandler{h: l.Handler(), name: name}), nil
}

// componentHandler adds KeyComponent to records that have none.
type componentHandler struct {
	h    slog.Handler
	name string
	set  bool // a With attribute already names the component
}

func (c *componentHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return c.h.Enabled(ctx, l)
}

func (c *componentHandler) Handle(ctx context.Context, r slog.Record) error {
	if !c.set {
		has := false
		r.Attrs(func(a slog.Attr) bool {
			has = a.Key == KeyComponent
			return !has
		})
		if !has {
			r = r.Clone()
			r.AddAttrs(slog.String(KeyComponent, c.name))
		}
	}
	return c.h.Handle(ctx, r)
}

func (c *componentHandler) WithAttrs(as []slog.Attr) slog.Handler {
	set := c.set
	for _, a := range as {
		set = set || a.Key == KeyComponent
	}
	return &componentHandler{h: c.h.WithAttrs(as), name: c.name, set: set}
}

// WithGroup fixes the component first: inside a group it would be
// group.component.
func (c *componentHandler) WithGroup(g string) slog.Handler {
	h := c.h
	if !c.set {
		h = h.WithAttrs([]slog.Attr{slog.String(KeyComponent, c.name)})
	}
	return &componentHandler{h: h.WithGroup(g), name: c.name, set: true}
}
