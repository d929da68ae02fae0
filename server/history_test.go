package server_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
)

// BenchmarkGapCheck: what the gap check (history.go) adds to an incremental pull of
// 10 changes from a user with 2,000 records, on a store with 20 process starts
// recorded, against the same pull without the check ("check=off"), in the same run.
//
//	MELONSYNC_TEST_POSTGRES=… go test ./server -run '^$' -bench GapCheck -count 6 | benchstat -col /check -
func BenchmarkGapCheck(b *testing.B) {
	stores := map[string]func(b *testing.B) server.Store{
		"sqlite": func(b *testing.B) server.Store { return testutil.SQLiteStore(b, b.TempDir()) },
		"postgres": func(b *testing.B) server.Store {
			dsn := testutil.PostgresDSN(b)
			name, _ := testutil.PostgresSchema(b, dsn, "melon_bench_gaps")
			s, err := postgres.Open(context.Background(), dsn, postgres.WithSchema(name))
			if err != nil {
				b.Fatal(err)
			}
			return s
		},
	}
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run("store="+kind, func(b *testing.B) {
			h := storetest.NewHarness(b, stores[kind](b))
			for i := 0; i < 20; i++ {
				if _, err := server.New(h.Store, h.Schema).Resume(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			t0 := h.PullFrom("alice", "d0", 0).Timestamp
			h.MustPush("alice", "d0", t0, records("projects", false, "old", 2000, ""))
			since := h.PullFrom("alice", "d1", t0).Timestamp
			h.MustPush("alice", "d2", since, records("projects", false, "new", 10, ""))
			for _, check := range []bool{true, false} {
				b.Run(fmt.Sprintf("check=%s", map[bool]string{true: "on", false: "off"}[check]), func(b *testing.B) {
					defer server.SetGapCheck(check)()
					for i := 0; i < b.N; i++ {
						var n countWriter
						if err := h.Svc.Pull(context.Background(), server.Caller{User: "alice", Device: "d1"}, server.PullParams{LastPulledAt: since}, &n); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}
