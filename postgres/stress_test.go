package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/melonsync/melonsync"
	mhttp "github.com/melonsync/melonsync/http"
)

// schemaDSN returns the test DSN (which must be a URL) with search_path set to name.
func schemaDSN(t testing.TB, name string) string {
	t.Helper()
	u, err := url.Parse(testDSN(t))
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Skip("MELONSYNC_TEST_POSTGRES is not a postgres:// URL")
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// write is one record change acknowledged by a server.
type write struct {
	user, table, id string
	version         int64
	deleted         bool // the change deleted the record
}

// seenResponse is what one pull answered: its range and the ids it listed.
type seenResponse struct {
	since, ts int64
	ids       map[string]bool // table + "/" + id
}

// TestStressTwoProcesses runs two melonsync processes on one database with
// concurrent pushers (several users, and several devices of one user who also fight
// over a shared record) and pullers that alternate between the processes. Every
// acknowledged change must appear in the one response of every puller of its user
// whose range covers its version; no response may list an id twice; and each
// puller's replica must equal the database at the end.
func TestStressTwoProcesses(t *testing.T) {
	dur := 12 * time.Second
	if s := os.Getenv("MELONSYNC_STRESS_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		dur = time.Duration(n) * time.Second
	}
	stress(t, dur, false)
}

// TestStressCatchesBrokenGate runs the stress test on a store whose writers draw
// their versions without taking the gate (DESIGN.md, "Versions: the gate"), so that
// a pull can read a clock above a version still in flight: the test must see missed
// changes, or it could not catch a broken version scheme.
func TestStressCatchesBrokenGate(t *testing.T) {
	if missed := stress(t, 6*time.Second, true); missed == 0 {
		t.Fatal("the stress test found nothing wrong with a store whose writers skip the gate")
	}
}

// breakGate replaces __melon_version in schema name with one that skips the gate.
func breakGate(t *testing.T, dsn, name string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(context.Background(), `CREATE OR REPLACE FUNCTION `+pgx.Identifier{name, "__melon_version"}.Sanitize()+`(inst text, sch text) RETURNS bigint
		LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
		DECLARE
			setting text := 'melonsync.v_' || inst;
			v bigint := nullif(current_setting(setting, true), '')::bigint;
		BEGIN
			IF v IS NOT NULL THEN
				RETURN v;
			END IF;
			v := nextval(format('%I.__melon_version_seq', sch)::regclass);
			PERFORM set_config(setting, v::text, true);
			RETURN v;
		END
		$fn$`)
	if err != nil {
		t.Fatal(err)
	}
}

// stress runs the two-process stress test for dur and returns how many acknowledged
// changes pullers missed (and replicas that differ from the database). With broken,
// the store's gate is broken first, and misses are counted rather than failures.
func stress(t *testing.T, dur time.Duration, broken bool) int {
	name := newSchemaName(t)
	dsn := schemaDSN(t, name)
	secret := "stress-test-secret-0123456789abcdef"
	servers := make([]string, 2)
	for i := range servers {
		servers[i], _ = startServer(t, dsn, secret)
	}
	if broken {
		breakGate(t, dsn, name)
	}
	auth, err := mhttp.NewAuth([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	client := func(server int, user, device string) *syncClient {
		tok, err := auth.Mint(user, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return &syncClient{base: servers[server], token: tok, device: device, hc: hc}
	}
	// Users: "shared" has three devices, the others one each.
	devices := map[string]int{"shared": 3, "u1": 1, "u2": 1, "u3": 1}
	users := []string{"shared", "u1", "u2", "u3", "sqlw"} // sqlw: written with plain SQL only
	const pullersPerUser = 2
	tables := []string{"projects", "tasks", "comments"}

	ctx, cancel := context.WithTimeout(context.Background(), dur+90*time.Second)
	defer cancel()
	stopPush := make(chan struct{})
	var (
		mu        sync.Mutex
		writes    []write
		pushes    atomic.Int64
		conflicts atomic.Int64
		perServer [2]atomic.Int64
	)
	var pushWG sync.WaitGroup
	for user, n := range devices {
		for d := 0; d < n; d++ {
			pushWG.Add(1)
			go func(user string, d int) {
				defer pushWG.Done()
				rng := rand.New(rand.NewPCG(uint64(d), uint64(len(user))))
				dev := fmt.Sprintf("dev%d", d)
				cl := []*syncClient{client(0, user, dev), client(1, user, dev)}
				alive := map[string][]string{} // ids this device created and has not deleted
				seq := 0
				r, _, err := cl[0].pull(ctx, 0)
				if err != nil {
					t.Errorf("%s/%s: first pull: %v", user, dev, err)
					return
				}
				last := r.Timestamp
				for {
					select {
					case <-stopPush:
						return
					default:
					}
					ch := melonsync.Changes{}
					tc := func(table string) *melonsync.TableChanges {
						if ch[table] == nil {
							ch[table] = &melonsync.TableChanges{Created: []melonsync.RawRecord{}, Updated: []melonsync.RawRecord{}, Deleted: []string{}}
						}
						return ch[table]
					}
					var ws []write
					for k := rng.IntN(4) + 1; k > 0; k-- {
						table := tables[rng.IntN(3)]
						seq++
						id := fmt.Sprintf("%s-%s-%d", user, dev, seq)
						tc(table).Created = append(tc(table).Created, record(table, id, rng))
						ws = append(ws, write{user, table, id, 0, false})
					}
					touched := map[string]bool{}
					for k := rng.IntN(3); k > 0; k-- {
						table := tables[rng.IntN(3)]
						if len(alive[table]) == 0 || touched[table] {
							continue
						}
						touched[table] = true
						i := rng.IntN(len(alive[table]))
						id := alive[table][i]
						del := rng.IntN(4) == 0
						if del {
							tc(table).Deleted = append(tc(table).Deleted, id)
							alive[table] = append(alive[table][:i], alive[table][i+1:]...)
						} else {
							tc(table).Updated = append(tc(table).Updated, record(table, id, rng))
						}
						ws = append(ws, write{user, table, id, 0, del})
					}
					if devices[user] > 1 && rng.IntN(3) == 0 && !touched["projects"] {
						id := "shared-" + user
						tc("projects").Updated = append(tc("projects").Updated, record("projects", id, rng))
						ws = append(ws, write{user, "projects", id, 0, false})
					}
					var resp *melonsync.PushResponse
					for attempt := 0; ; attempt++ {
						srv := rng.IntN(2)
						var st int
						resp, st, err = cl[srv].push(ctx, last, ch)
						if err == nil {
							perServer[srv].Add(1)
							break
						}
						// The shared record changes every few milliseconds: a device can
						// lose the race many times in a row (a matter of fairness, not of
						// missed changes, which is what this test checks).
						if st != http.StatusConflict || attempt == 200 {
							t.Errorf("%s/%s: push: %v", user, dev, err)
							return
						}
						// Another device changed the shared record: pull, then retry.
						conflicts.Add(1)
						time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
						r, _, err := cl[srv].pull(ctx, last)
						if err != nil {
							t.Errorf("%s/%s: pull after conflict: %v", user, dev, err)
							return
						}
						last = r.Timestamp
					}
					pushes.Add(1)
					for table, c := range ch {
						for _, rec := range c.Created {
							alive[table] = append(alive[table], rec["id"].(string))
						}
					}
					mu.Lock()
					for _, w := range ws {
						w.version = resp.Timestamp
						writes = append(writes, w)
					}
					mu.Unlock()
				}
			}(user, d)
		}
	}

	// Plain SQL from "the team's code", through a third path: records of its own user,
	// and updates of the record the shared user's devices fight over; transactions of
	// every isolation level that stay open a while before committing.
	var sqlTx, sqlAborted atomic.Int64
	pushWG.Add(1)
	go func() {
		defer pushWG.Done()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(context.Background())
		rng := rand.New(rand.NewPCG(7, 7))
		isos := []pgx.TxIsoLevel{pgx.ReadCommitted, pgx.RepeatableRead, pgx.Serializable}
		alive := map[string][]string{}
		seq := 0
		for {
			select {
			case <-stopPush:
				return
			default:
			}
			tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: isos[rng.IntN(3)]})
			if err != nil {
				t.Error(err)
				return
			}
			var ws []write
			var marker [2]string
			var inserted []write
			for k := rng.IntN(3) + 1; k > 0; k-- {
				table := tables[rng.IntN(3)]
				seq++
				id := fmt.Sprintf("sqlw-%d", seq)
				rec := record(table, id, rng)
				names, vals := []string{"__owner"}, []any{"sqlw"}
				for k, v := range rec {
					names = append(names, k)
					vals = append(vals, v)
				}
				marks := make([]string, len(vals))
				for i := range marks {
					marks[i] = "$" + strconv.Itoa(i+1)
				}
				if _, err := tx.Exec(ctx, `INSERT INTO `+table+` (`+strings.Join(names, ", ")+`) VALUES (`+strings.Join(marks, ", ")+`)`, vals...); err != nil {
					t.Errorf("sql insert: %v", err)
					return
				}
				marker = [2]string{table, id}
				inserted = append(inserted, write{"sqlw", table, id, 0, false})
			}
			ws = append(ws, inserted...)
			table := tables[rng.IntN(3)]
			if n := len(alive[table]); n > 0 && rng.IntN(3) == 0 {
				i := rng.IntN(n)
				id := alive[table][i]
				del := rng.IntN(2) == 0
				if del {
					_, err = tx.Exec(ctx, `DELETE FROM `+table+` WHERE id = $1`, id)
					alive[table] = append(alive[table][:i], alive[table][i+1:]...)
				} else {
					_, err = tx.Exec(ctx, `UPDATE `+table+` SET __owner = __owner WHERE id = $1`, id)
				}
				if err != nil {
					t.Errorf("sql change: %v", err)
					return
				}
				ws = append(ws, write{"sqlw", table, id, 0, del})
			}
			if rng.IntN(3) == 0 {
				tag, err := tx.Exec(ctx, `UPDATE projects SET name = 'set by sql' WHERE id = 'shared-shared'`)
				if err != nil {
					tx.Rollback(ctx)
					sqlAborted.Add(1) // a serialization failure: the row changed meanwhile
					continue
				}
				if tag.RowsAffected() == 1 {
					ws = append(ws, write{"shared", "projects", "shared-shared", 0, false})
				}
			}
			time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
			if err := tx.Commit(ctx); err != nil {
				sqlAborted.Add(1) // rolled back: nothing happened
				continue
			}
			sqlTx.Add(1)
			for _, w := range inserted {
				alive[w.table] = append(alive[w.table], w.id)
			}
			// The transaction's version: that of a row only this writer touches.
			var v int64
			if err := conn.QueryRow(ctx, `SELECT __version FROM `+marker[0]+` WHERE id = $1`, marker[1]).Scan(&v); err != nil {
				t.Errorf("sql version: %v", err)
				return
			}
			mu.Lock()
			for _, w := range ws {
				w.version = v
				writes = append(writes, w)
			}
			mu.Unlock()
		}
	}()

	stopPull := make(chan struct{})
	type puller struct {
		user      string
		responses []seenResponse
		replica   map[string]map[string]melonsync.RawRecord
		pulls     int
		received  int
	}
	var pullers []*puller
	var pullWG sync.WaitGroup
	for _, user := range users {
		for k := 0; k < pullersPerUser; k++ {
			p := &puller{user: user, replica: map[string]map[string]melonsync.RawRecord{}}
			pullers = append(pullers, p)
			pullWG.Add(1)
			go func(p *puller, k int) {
				defer pullWG.Done()
				dev := fmt.Sprintf("puller%d", k)
				cl := []*syncClient{client(0, p.user, dev), client(1, p.user, dev)}
				var last int64
				final := false
				for i := 0; ; i++ {
					select {
					case <-stopPull:
						final = true
					default:
					}
					r, _, err := cl[(i+k)%2].pull(ctx, last)
					if err != nil {
						t.Errorf("puller %s/%s: %v", p.user, dev, err)
						return
					}
					if r.Timestamp < last || r.Strategy != "" {
						t.Errorf("puller %s/%s: timestamp %d after %d, strategy %q", p.user, dev, r.Timestamp, last, r.Strategy)
					}
					seen := seenResponse{since: last, ts: r.Timestamp, ids: map[string]bool{}}
					for table, c := range r.Changes {
						if p.replica[table] == nil {
							p.replica[table] = map[string]melonsync.RawRecord{}
						}
						add := func(id string) {
							if seen.ids[table+"/"+id] {
								t.Errorf("puller %s/%s: %s/%s twice in one response", p.user, dev, table, id)
							}
							seen.ids[table+"/"+id] = true
							p.received++
						}
						for _, rec := range append(append([]melonsync.RawRecord{}, c.Created...), c.Updated...) {
							id := rec["id"].(string)
							add(id)
							p.replica[table][id] = rec
						}
						for _, id := range c.Deleted {
							add(id)
							delete(p.replica[table], id)
						}
					}
					p.responses = append(p.responses, seen)
					p.pulls++
					last = r.Timestamp
					if final {
						return
					}
				}
			}(p, k)
		}
	}

	time.Sleep(dur)
	close(stopPush)
	pushWG.Wait()
	close(stopPull) // every puller now makes one last pull, after the last push
	pullWG.Wait()
	if t.Failed() {
		return 0
	}

	// Every acknowledged change is in the one response of each puller that covers it,
	// except that a first pull (since 0) lists no deletions: a record created and
	// deleted before it rightly appears nowhere. (Ids are never reused.)
	deletedAt := map[string]int64{}
	for _, w := range writes {
		if w.deleted {
			deletedAt[w.table+"/"+w.id] = w.version
		}
	}
	missed := 0
	for _, p := range pullers {
		for _, w := range writes {
			if w.user != p.user {
				continue
			}
			i := sort.Search(len(p.responses), func(i int) bool { return p.responses[i].ts >= w.version })
			if i == len(p.responses) || p.responses[i].since >= w.version {
				missed++
				if missed < 10 && !broken {
					t.Errorf("puller of %s: no response covers version %d of %s/%s", p.user, w.version, w.table, w.id)
				}
				continue
			}
			if d, ok := deletedAt[w.table+"/"+w.id]; ok && p.responses[i].since == 0 && d <= p.responses[i].ts {
				continue
			}
			if !p.responses[i].ids[w.table+"/"+w.id] {
				missed++
				if missed < 10 && !broken {
					t.Errorf("puller of %s missed %s/%s (version %d, response %d..%d)", p.user, w.table, w.id, w.version, p.responses[i].since, p.responses[i].ts)
				}
			}
		}
	}

	// Each replica equals the database.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	cols := map[string]string{
		"projects": `name, is_favorite, position`,
		"tasks":    `project_id, name, is_done, position, description`,
		"comments": `task_id, body`,
	}
	dbState := map[string]string{}
	for _, user := range users {
		state := map[string]map[string]melonsync.RawRecord{}
		for _, table := range tables {
			rows, err := conn.Query(ctx, `SELECT id, `+cols[table]+` FROM `+table+` WHERE __owner = $1`, user)
			if err != nil {
				t.Fatal(err)
			}
			state[table] = map[string]melonsync.RawRecord{}
			names := append([]string{"id"}, strings.Split(strings.ReplaceAll(cols[table], " ", ""), ",")...)
			for rows.Next() {
				vals, err := rows.Values()
				if err != nil {
					t.Fatal(err)
				}
				rec := melonsync.RawRecord{}
				for i, n := range names {
					rec[n] = vals[i]
				}
				state[table][rec["id"].(string)] = rec
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
		}
		dbState[user] = normalize(t, state)
	}
	differ := 0
	for _, p := range pullers {
		if got := normalize(t, p.replica); got != dbState[p.user] {
			differ++
			if broken {
				continue
			}
			t.Errorf("puller of %s: replica differs from the database\nreplica:  %.300s\ndatabase: %.300s", p.user, got, dbState[p.user])
		}
	}
	var pulls, received int
	for _, p := range pullers {
		pulls += p.pulls
		received += p.received
	}
	var rows int
	for _, s := range dbState {
		var m map[string]map[string]any
		json.Unmarshal([]byte(s), &m)
		for _, tbl := range m {
			rows += len(tbl)
		}
	}
	t.Logf("%s, 2 processes: %d pushes acknowledged (%d via process 1, %d via process 2), %d plain-SQL transactions committed (%d aborted), "+
		"%d record changes in all, %d push conflicts (shared record) retried; %d pullers made %d pulls receiving %d records; %d live rows at the end; "+
		"missed changes: %d; replicas differing from the database: %d",
		dur, pushes.Load(), perServer[0].Load(), perServer[1].Load(), sqlTx.Load(), sqlAborted.Load(),
		len(writes), conflicts.Load(), len(pullers), pulls, received, rows, missed, differ)
	if len(writes) == 0 || perServer[0].Load() == 0 || perServer[1].Load() == 0 || sqlTx.Load() == 0 {
		t.Errorf("the stress test did not exercise both processes and plain SQL")
	}
	return missed + differ
}

// record returns a random record for table.
func record(table, id string, rng *rand.Rand) melonsync.RawRecord {
	switch table {
	case "projects":
		return melonsync.RawRecord{"id": id, "name": fmt.Sprintf("p%d", rng.IntN(1000)), "is_favorite": rng.IntN(2) == 0, "position": float64(rng.IntN(100))}
	case "tasks":
		r := melonsync.RawRecord{"id": id, "project_id": "x", "name": fmt.Sprintf("t%d", rng.IntN(1000)), "is_done": rng.IntN(2) == 0, "position": rng.Float64()}
		if rng.IntN(2) == 0 {
			r["description"] = "d"
		} else {
			r["description"] = nil
		}
		return r
	default:
		return melonsync.RawRecord{"id": id, "task_id": "y", "body": strings.Repeat("b", rng.IntN(20))}
	}
}

// normalize returns a canonical JSON of table → id → record.
func normalize(t *testing.T, state map[string]map[string]melonsync.RawRecord) string {
	out := map[string]map[string]melonsync.RawRecord{}
	for table, recs := range state {
		if len(recs) > 0 {
			out[table] = recs
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	// Round-trip so numbers and nulls compare alike whatever produced them.
	var v any
	json.Unmarshal(b, &v)
	b, _ = json.Marshal(v)
	return string(b)
}
