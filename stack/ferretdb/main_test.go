package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

// countingHandler counts the WithAttrs calls that reach it.
type countingHandler struct {
	slog.Handler
	withAttrs *int
}

func (h countingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	*h.withAttrs++
	return countingHandler{h.Handler.WithAttrs(attrs), h.withAttrs}
}

func (h countingHandler) WithGroup(name string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(name), h.withAttrs}
}

// A debug line with attributes costs no formatting at the info level, and a line that is
// logged reads as the text handler alone writes it.
func TestLazyAttrsFormatOnlyWhatIsLogged(t *testing.T) {
	var out, want bytes.Buffer
	calls := 0
	opts := &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: dropTime}
	lazy := slog.New(&lazyAttrs{base: countingHandler{slog.NewTextHandler(&out, opts), &calls}})
	plain := slog.New(slog.NewTextHandler(&want, opts))

	for _, l := range []*slog.Logger{lazy, plain} {
		l.With("args", []any{strings.Repeat("x", 100)}).DebugContext(context.Background(), ">>> INSERT")
	}
	if calls != 0 || out.Len() != 0 {
		t.Fatalf("a debug line at the info level: %d WithAttrs calls, output %q", calls, out.String())
	}
	for _, l := range []*slog.Logger{lazy, plain} {
		c := l.With("name", "sqlite").WithGroup("conn").With("addr", "127.0.0.1:1")
		c.Info("Connection started", "n", 1)
		c.Info("Connection stopped", "n", 2)
	}
	if out.String() != want.String() {
		t.Fatalf("lazy handler wrote\n%s\nthe text handler\n%s", out.String(), want.String())
	}
	if calls != 2 {
		t.Fatalf("attributes formatted %d times, want 2 (once per With, for the logger that logged)", calls)
	}
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
