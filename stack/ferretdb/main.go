// Command ferretdb runs an embedded FerretDB (MongoDB wire protocol on SQLite,
// or on PostgreSQL with -handler=postgresql) for graphrag-streams' local stack.
//
// The upstream `go install .../cmd/ferretdb` binary panics at start when built
// outside FerretDB's own tree (it expects a generated version.txt), so the
// project builds this tiny wrapper around the supported embedding API instead.
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	gcdebug "runtime/debug"
	"slices"
	"sync"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	dataDir := flag.String("data-dir", "data", "directory holding the SQLite databases")
	handler := flag.String("handler", "sqlite", "backend: sqlite or postgresql")
	postgresqlURL := flag.String("postgresql-url", "", "PostgreSQL connection string (-handler=postgresql)")
	debug := flag.Bool("debug", false, "log at debug level")
	listenTLS := flag.String("listen-tls", "", "TLS address to listen on (empty: no TLS listener)")
	tlsCert := flag.String("listen-tls-cert-file", "", "TLS server certificate (PEM)")
	tlsKey := flag.String("listen-tls-key-file", "", "TLS server key (PEM)")
	tlsCA := flag.String("listen-tls-ca-file", "", "CA that signs client certificates (PEM; optional)")
	gcPercent := flag.Int("gc-percent", 400, "Go's GOGC: heap growth between collections, in percent")
	synchronous := flag.String("sqlite-synchronous", "normal",
		"SQLite's synchronous pragma: normal (WAL synced at checkpoints) or full (every commit)")
	flag.Parse()

	absDir, err := filepath.Abs(*dataDir)
	if err != nil {
		log.Fatalf("data dir: %v", err)
	}
	if err := os.MkdirAll(absDir, 0o755); err != nil {
		log.Fatalf("data dir: %v", err)
	}

	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	logger := slog.New(&lazyAttrs{base: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})})
	gcdebug.SetGCPercent(*gcPercent)

	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{
			TCP: *listen, TLS: *listenTLS,
			TLSCertFile: *tlsCert, TLSKeyFile: *tlsKey, TLSCAFile: *tlsCA,
		},
		Logger:        logger,
		Handler:       *handler,
		SQLiteURL:     sqliteURL(absDir, *synchronous),
		PostgreSQLURL: *postgresqlURL,
	})
	if err != nil {
		log.Fatalf("ferretdb: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	where := absDir
	if *handler == "postgresql" {
		where = *postgresqlURL
	}
	logger.Info("FerretDB listening", "handler", *handler, "addr", *listen, "tls", *listenTLS, "data", where)
	f.Run(ctx)
}

// lazyAttrs is a slog.Handler that formats the attributes given to Logger.With only when a
// record is handled. FerretDB's SQL layer calls With(args) before every statement, for a
// debug line: slog's TextHandler formats the attributes (the whole document being written,
// quoted) at that call, whatever the level. That was 14 % of FerretDB's CPU while the sink
// wrote (go tool pprof), for lines never logged at the info level.
type lazyAttrs struct {
	base  slog.Handler
	steps []func(slog.Handler) slog.Handler // WithAttrs and WithGroup calls, in order

	once  sync.Once
	built slog.Handler
}

func (h *lazyAttrs) Enabled(ctx context.Context, level slog.Level) bool {
	return h.base.Enabled(ctx, level)
}

func (h *lazyAttrs) Handle(ctx context.Context, r slog.Record) error {
	h.once.Do(func() {
		h.built = h.base
		for _, step := range h.steps {
			h.built = step(h.built)
		}
	})
	return h.built.Handle(ctx, r)
}

func (h *lazyAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &lazyAttrs{base: h.base, steps: append(slices.Clip(h.steps), func(next slog.Handler) slog.Handler {
		return next.WithAttrs(attrs)
	})}
}

func (h *lazyAttrs) WithGroup(name string) slog.Handler {
	return &lazyAttrs{base: h.base, steps: append(slices.Clip(h.steps), func(next slog.Handler) slog.Handler {
		return next.WithGroup(name)
	})}
}

// sqliteURL is FerretDB's SQLite URL for the databases in dir. FerretDB keeps SQLite's
// default synchronous=FULL, under which every commit syncs the WAL to disk; FerretDB
// commits every statement of an update command on its own, so an update cost ten times
// an insert (0.73 ms of FerretDB's CPU against 0.08). With NORMAL, the WAL mode's usual
// setting, a commit survives the process crashing and only a power loss or OS crash may
// undo the last ones: what MongoDB's default write concern promises (its journal is
// synced every 100 ms) and what the local broker does (Kafka leaves flushing to the OS).
func sqliteURL(dir, synchronous string) string {
	return "file:" + dir + "/?_pragma=synchronous(" + url.QueryEscape(synchronous) + ")"
}
