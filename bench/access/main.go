// Command access measures what access rules (SPEC §6) cost a pull: a user in three
// teams of 100,000 tasks each pulls 10 changes, next to the same incremental pull on
// the same schema without access rules (the user owns the same 300,000 tasks), both
// measured in the same run on the same store kind. A first sync of everything, and the
// pull of a new member who was just granted one team, are printed for reference.
//
//	go run ./bench/access                      # SQLite, 3 × 100,000 rows
//	go run ./bench/access -n 20000 -db 'postgres://…'
//
// The pulls go through server.Service into io.Discard (JSON encoding included, no
// HTTP), so the figures are the server's own cost.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/bench/internal/measure"
	"github.com/melonsync/melonsync/postgres"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/sqlite"
)

func main() {
	n := flag.Int("n", 100000, "tasks per team")
	groups := flag.Int("groups", 3, "teams the user is in")
	changes := flag.Int("changes", 10, "changes the incremental pull brings")
	runs := flag.Int("runs", 7, "repetitions of each pull (the median is printed)")
	db := flag.String("db", "", "a postgres:// URL to measure PostgreSQL (two schemas are created in it and dropped); SQLite files in a temporary directory otherwise")
	flag.Parse()
	if err := run(*n, *groups, *changes, *runs, *db); err != nil {
		log.Fatal(err)
	}
}

// side is one of the two set-ups: the teams schema with or without its access rules.
type side struct {
	name  string
	rules bool
	sch   *schema.Schema
	store server.Store
	svc   *server.Service
	// s is alice's lastPulledAt before the changes; s0 the new member's.
	s, s0  int64
	filled time.Duration
	res    map[string]figure
}

type figure struct {
	d     time.Duration
	bytes int64
	recs  int
}

func run(n, groups, changes, runs int, dsn string) error {
	ctx := context.Background()
	raw, err := os.ReadFile(filepath.Join("examples", "teams", "schema.json"))
	if err != nil {
		return fmt.Errorf("run it from the repository's root: %w", err)
	}
	withRules, err := schema.Parse(raw)
	if err != nil {
		return err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return err
	}
	delete(top, "access")
	plainRaw, _ := json.Marshal(top)
	plain, err := schema.Parse(plainRaw)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "melonsync-bench-access-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	kind := "SQLite"
	if dsn != "" {
		kind = "PostgreSQL"
	}
	sides := []*side{{name: "access rules", rules: true, sch: withRules}, {name: "no access rules", sch: plain}}
	for i, sd := range sides {
		if dsn == "" {
			sd.store, err = sqlite.Open(filepath.Join(dir, fmt.Sprintf("s%d.db", i)))
		} else {
			name := fmt.Sprintf("melon_bench_access_%d_%d", os.Getpid(), i)
			defer dropSchema(dsn, name)
			sd.store, err = postgres.Open(ctx, dsn, postgres.WithSchema(name))
		}
		if err != nil {
			return err
		}
		defer sd.store.Close()
		if err := sd.store.Prepare(ctx, sd.sch); err != nil {
			return err
		}
		sd.svc = server.New(sd.store, sd.sch)
		sd.res = map[string]figure{}
		start := time.Now()
		if err := sd.fill(ctx, n, groups); err != nil {
			return fmt.Errorf("%s: fill: %w", sd.name, err)
		}
		sd.filled = time.Since(start)
	}
	for _, sd := range sides {
		if err := sd.measure(ctx, n, groups, changes, runs); err != nil {
			return fmt.Errorf("%s: %w", sd.name, err)
		}
	}
	fmt.Printf("melonsync access-rules benchmark (%s, a user in %d teams × %d tasks, GOMAXPROCS=%d, median of %d runs)\n\n",
		kind, groups, n, runtime.GOMAXPROCS(0), runs)
	fmt.Printf("%-52s %14s %14s %8s\n", "pull", sides[0].name, sides[1].name, "ratio")
	for _, k := range []string{"incremental", "first", "granted"} {
		a, b := sides[0].res[k], sides[1].res[k]
		label := map[string]string{
			"incremental": fmt.Sprintf("incremental, %d changes", changes),
			"first":       fmt.Sprintf("first sync, %d records", a.recs),
			"granted":     fmt.Sprintf("new member's next pull, %d records granted", a.recs),
		}[k]
		if k == "granted" {
			fmt.Printf("%-52s %14s %14s %8s\n", label, a.d.Round(10*time.Microsecond), "(n/a)", "")
			continue
		}
		fmt.Printf("%-52s %14s %14s %7.2fx\n", label, a.d.Round(10*time.Microsecond), b.d.Round(10*time.Microsecond), a.d.Seconds()/b.d.Seconds())
	}
	fmt.Printf("\nrecords in each answer: incremental %d / %d, first sync %d / %d; fill: %s / %s\n",
		sides[0].res["incremental"].recs, sides[1].res["incremental"].recs, sides[0].res["first"].recs, sides[1].res["first"].recs,
		sides[0].filled.Round(time.Millisecond), sides[1].filled.Round(time.Millisecond))
	return nil
}

func dropSchema(dsn, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, dsn); err == nil {
		conn.Exec(ctx, `DROP SCHEMA IF EXISTS "`+name+`" CASCADE`)
		conn.Close(ctx)
	}
}

func (sd *side) push(ctx context.Context, user, device string, lastPulledAt int64, changes string) (*melonsync.PushResponse, error) {
	p, err := server.DecodePush(sd.sch, []byte(fmt.Sprintf(`{"lastPulledAt":%d,"changes":%s}`, lastPulledAt, changes)))
	if err != nil {
		return nil, err
	}
	resp, err := sd.svc.Push(ctx, server.Caller{User: user, Device: device}, p)
	if err == nil && len(resp.RejectedIDs) > 0 {
		err = fmt.Errorf("refused: %v", resp.RejectedIDs)
	}
	return resp, err
}

// fill: alice creates the teams (with bob as a second member) and n tasks in each, as
// pushes of 5000; without rules the same rows are simply alice's.
func (sd *side) fill(ctx context.Context, n, groups int) error {
	for g := 0; g < groups; g++ {
		team := fmt.Sprintf("team%d", g)
		if _, err := sd.push(ctx, "alice", "seed", 0, fmt.Sprintf(`{"teams":{"created":[{"id":%q,"name":"Team %d"}]},"team_members":{"created":[{"id":"m_alice_%d","team_id":%q,"user_id":"alice"},{"id":"m_bob_%d","team_id":%q,"user_id":"bob"}]}}`, team, g, g, team, g, team)); err != nil {
			return err
		}
		for start := 0; start < n; start += 5000 {
			var recs []string
			for i := start; i < min(start+5000, n); i++ {
				recs = append(recs, fmt.Sprintf(`{"id":"k%d_%d","team_id":%q,"project_id":"p%d","name":"Task number %d of team %d","is_done":%v,"position":%d}`, g, i, team, i%100, i, g, i%2 == 0, i))
			}
			if _, err := sd.push(ctx, "alice", "seed", 0, `{"tasks":{"created":[`+strings.Join(recs, ",")+`]}}`); err != nil {
				return err
			}
		}
	}
	return nil
}

// pull runs one pull into io.Discard and returns its size and record count.
func (sd *side) pull(ctx context.Context, user, device string, since int64) (int64, int, int64, error) {
	var buf bytes.Buffer
	if err := sd.svc.Pull(ctx, server.Caller{User: user, Device: device}, server.PullParams{LastPulledAt: since}, &buf); err != nil {
		return 0, 0, 0, err
	}
	var pr melonsync.PullResponse
	if err := json.Unmarshal(buf.Bytes(), &pr); err != nil {
		return 0, 0, 0, err
	}
	recs := 0
	for _, tc := range pr.Changes {
		recs += len(tc.Created) + len(tc.Updated) + len(tc.Deleted)
	}
	return int64(buf.Len()), recs, pr.Timestamp, nil
}

// timed runs the pull runs times, each measured alone, and keeps the median.
func (sd *side) timed(ctx context.Context, key, user, device string, since int64, runs int) error {
	var ds []time.Duration
	var size int64
	var recs int
	for i := 0; i < runs; i++ {
		r, err := measure.Run(func() error {
			enc := &countWriter{}
			err := sd.svc.Pull(ctx, server.Caller{User: user, Device: device}, server.PullParams{LastPulledAt: since}, enc)
			size = enc.n
			return err
		})
		if err != nil {
			return err
		}
		ds = append(ds, r.D)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	_, recs, _, err := sd.pull(ctx, user, device, since)
	if err != nil {
		return err
	}
	sd.res[key] = figure{d: ds[len(ds)/2], bytes: size, recs: recs}
	return nil
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)

func (sd *side) measure(ctx context.Context, n, groups, changes, runs int) error {
	// alice's device has everything; carol (a future member) has synced nothing yet.
	_, _, s, err := sd.pull(ctx, "alice", "laptop", 0)
	if err != nil {
		return err
	}
	sd.s = s
	_, _, sd.s0, err = sd.pull(ctx, "carol", "phone", 0)
	if err != nil {
		return err
	}
	// Another device (bob's, or alice's phone without rules) changes `changes` tasks
	// spread over the teams.
	who := "bob"
	if !sd.rules {
		who = "alice"
	}
	var recs []string
	for i := 0; i < changes; i++ {
		g := i % groups
		recs = append(recs, fmt.Sprintf(`{"id":"k%d_%d","name":"changed %d"}`, g, (i*7919)%n, i))
	}
	if _, err := sd.push(ctx, who, "other", sd.s, `{"tasks":{"updated":[`+strings.Join(recs, ",")+`]}}`); err != nil {
		return err
	}
	if err := sd.timed(ctx, "incremental", "alice", "laptop", sd.s, runs); err != nil {
		return err
	}
	if got := sd.res["incremental"].recs; got != changes {
		return fmt.Errorf("the incremental pull carried %d records, want %d", got, changes)
	}
	if err := sd.timed(ctx, "first", "alice", "laptop2", 0, max(1, runs/3)); err != nil {
		return err
	}
	if sd.rules {
		// carol joins team0: her next pull brings the whole team.
		if _, err := sd.push(ctx, "alice", "seed", sd.s, `{"team_members":{"created":[{"id":"m_carol_0","team_id":"team0","user_id":"carol"}]}}`); err != nil {
			return err
		}
		if err := sd.timed(ctx, "granted", "carol", "phone", sd.s0, max(1, runs/3)); err != nil {
			return err
		}
		if got, want := sd.res["granted"].recs, n+1+3; got != want {
			return fmt.Errorf("the new member's pull carried %d records, want %d", got, want)
		}
	}
	return nil
}
