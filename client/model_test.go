package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A randomized model test: random local writes, fetches and marks-as-synced (with
// records changed in between and rejected ids) against a plain in-memory model of
// WatermelonDB's change tracking. After every step the whole database must equal the
// model.

type ldbModelRec struct {
	status  string
	changed []string
	values  map[string]any
}

type ldbModel map[string]map[string]*ldbModelRec // table → id → record

func (m ldbModel) record(table, id string) Record {
	r := m[table][id]
	out := Record{"id": id, "_status": r.status, "_changed": strings.Join(r.changed, ",")}
	for k, v := range r.values {
		out[k] = v
	}
	return out
}

func ldbRandomValue(rng *rand.Rand) any {
	switch rng.IntN(9) {
	case 0:
		return nil
	case 1:
		return rng.IntN(2) == 0
	case 2:
		return rng.IntN(3) // 0, 1 or 2
	case 3:
		return float64(rng.IntN(5)) / 2
	case 4:
		return math.NaN()
	case 5:
		return ""
	default:
		return []string{"a", "b", "é 🍉", "'"}[rng.IntN(4)]
	}
}

func TestRandomizedChangeTrackingAgainstModel(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) { ldbRunModel(t, seed, 250) })
	}
}

func ldbRunModel(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, seed*7919))
	db := ldbOpen(t)
	ctx := context.Background()
	tables := []string{"mock_projects", "mock_tasks"}
	model := ldbModel{}
	for _, tb := range tables {
		model[tb] = map[string]*ldbModelRec{}
	}
	ids := []string{"a", "b", "c", "d", "e", "f"}
	var pending *LocalChanges
	var pendingModel map[string]map[string]Record // fetched snapshot, per the model
	var pendingDeleted map[string][]string

	randValues := func(table string) map[string]any {
		cols := db.Schema().Table(table).Columns
		v := map[string]any{}
		for _, c := range cols {
			if rng.IntN(2) == 0 {
				v[c.Name] = ldbRandomValue(rng)
			}
		}
		return v
	}
	for step := 0; step < steps; step++ {
		table := tables[rng.IntN(len(tables))]
		id := ids[rng.IntN(len(ids))]
		cur := model[table][id]
		var op string
		var err error
		switch k := rng.IntN(10); {
		case k < 3: // create
			op = "create"
			values := randValues(table)
			values["id"] = id
			err = db.Write(ctx, func(tx *Tx) error { _, err := tx.Create(table, values); return err })
			if cur != nil {
				if !errors.Is(err, ErrExists) {
					t.Fatalf("step %d: create existing %s#%s: %v", step, table, id, err)
				}
				break
			}
			r := &ldbModelRec{status: StatusCreated, values: map[string]any{}}
			for _, c := range db.Schema().Table(table).Columns {
				if v, ok := values[c.Name]; ok {
					r.values[c.Name] = c.Sanitize(v)
				} else {
					r.values[c.Name] = c.Default()
				}
			}
			model[table][id] = r
		case k < 6: // update
			op = "update"
			values := randValues(table)
			err = db.Write(ctx, func(tx *Tx) error { return tx.Update(table, id, values) })
			switch {
			case cur == nil:
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("step %d: update missing: %v", step, err)
				}
			case cur.status == StatusDeleted:
				if !errors.Is(err, ErrDeleted) {
					t.Fatalf("step %d: update deleted: %v", step, err)
				}
			default:
				for _, c := range db.Schema().Table(table).Columns {
					v, ok := values[c.Name]
					if !ok {
						continue
					}
					nv := c.Sanitize(v)
					if nv == cur.values[c.Name] {
						continue
					}
					cur.values[c.Name] = nv
					if !slices.Contains(cur.changed, c.Name) {
						cur.changed = append(cur.changed, c.Name)
					}
					if cur.status != StatusCreated {
						cur.status = StatusUpdated
					}
				}
			}
		case k < 7: // mark as deleted
			op = "markAsDeleted"
			err = db.Write(ctx, func(tx *Tx) error { return tx.MarkAsDeleted(table, id) })
			if cur == nil {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("step %d: %v", step, err)
				}
			} else {
				cur.status = StatusDeleted
			}
		case k < 8: // destroy permanently
			op = "destroy"
			err = db.Write(ctx, func(tx *Tx) error { return tx.DestroyPermanently(table, id) })
			if cur == nil {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("step %d: %v", step, err)
				}
			} else {
				delete(model[table], id)
			}
		case k < 9: // fetch local changes (a push starts)
			op = "fetch"
			pending, err = db.FetchLocalChanges(ctx)
			if err != nil {
				t.Fatal(err)
			}
			pendingModel = map[string]map[string]Record{}
			pendingDeleted = map[string][]string{}
			want := 0
			for _, tb := range tables {
				pendingModel[tb] = map[string]Record{}
				for rid, r := range model[tb] {
					switch r.status {
					case StatusCreated, StatusUpdated:
						pendingModel[tb][rid] = model.record(tb, rid)
						want++
					case StatusDeleted:
						pendingDeleted[tb] = append(pendingDeleted[tb], rid)
						want++
					}
				}
			}
			if pending.Count != want {
				t.Fatalf("step %d: fetched %d changes, model has %d", step, pending.Count, want)
			}
		default: // the push succeeded: mark as synced, some ids rejected
			op = "markAsSynced"
			if pending == nil {
				continue
			}
			rejected := map[string][]string{}
			for _, tb := range tables {
				for _, rid := range ids {
					if rng.IntN(4) == 0 {
						rejected[tb] = append(rejected[tb], rid)
					}
				}
			}
			if err := db.MarkAsSynced(ctx, pending, rejected); err != nil {
				t.Fatal(err)
			}
			for _, tb := range tables {
				for rid, snap := range pendingModel[tb] {
					r := model[tb][rid]
					if slices.Contains(rejected[tb], rid) || r == nil || !cmp.Equal(model.record(tb, rid), snap, cmp.Comparer(func(a, b float64) bool { return a == b })) {
						continue
					}
					r.status, r.changed = StatusSynced, nil
				}
				for _, rid := range pendingDeleted[tb] {
					if r := model[tb][rid]; r != nil && r.status == StatusDeleted && !slices.Contains(rejected[tb], rid) {
						delete(model[tb], rid)
					}
				}
			}
			pending = nil
		}
		// compare everything
		for _, tb := range tables {
			want := map[string]Record{}
			for rid := range model[tb] {
				want[rid] = model.record(tb, rid)
			}
			got := map[string]Record{}
			db.Read(ctx, func(tx *Tx) error {
				recs, err := tx.Query(tb, Query{IncludeDeleted: true})
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range recs {
					got[r["id"].(string)] = r
				}
				return nil
			})
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("step %d (%s %s#%s): (-model +db):\n%s", step, op, table, id, diff)
			}
		}
	}
}
