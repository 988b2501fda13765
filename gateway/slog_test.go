package gateway

import "log/slog"

func slogJSON(h *harness) *slog.Logger { return slog.New(slog.NewJSONHandler(lockedWriter{h}, nil)) }
