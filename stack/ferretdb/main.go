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
	"os"
	"os/signal"
	"path/filepath"
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
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{
			TCP: *listen, TLS: *listenTLS,
			TLSCertFile: *tlsCert, TLSKeyFile: *tlsKey, TLSCAFile: *tlsCA,
		},
		Logger:        logger,
		Handler:       *handler,
		SQLiteURL:     "file:" + absDir + "/",
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
