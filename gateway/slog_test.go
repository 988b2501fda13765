package gateway

import "log/slog"

func slogJSON(h *harness) *slog.Logger { return slog.New(slog.NewJSONHandler(lockedWriter{h}, nil)) }

func slogTo(w interface{ Write([]byte) (int, error) }) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}
