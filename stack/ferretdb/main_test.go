package main

import (
	"bytes"
	"context"
	"database/sql"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
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

// TestSQLiteURLSetsSynchronousNormal opens a database as FerretDB's pool does (the URL's
// directory plus the database's file, with its query) and asks SQLite what it got.
func TestSQLiteURLSetsSynchronousNormal(t *testing.T) {
	for pragma, want := range map[string]int{"normal": 1, "full": 2} {
		u, err := url.Parse(sqliteURL(t.TempDir(), pragma))
		if err != nil {
			t.Fatal(err)
		}
		db, err := sql.Open("sqlite", "file:"+u.Path+"test.sqlite?"+u.RawQuery)
		if err != nil {
			t.Fatal(err)
		}
		var got int
		if err := db.QueryRow("PRAGMA synchronous").Scan(&got); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if got != want {
			t.Errorf("-sqlite-synchronous=%s: PRAGMA synchronous is %d, want %d", pragma, got, want)
		}
	}
}
