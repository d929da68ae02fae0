package server

import "github.com/melonsync/melonsync/schema"

// A table's part of a pull lists its created records before its updated ones, and
// which of the two a live row is only shows once it is read (SPEC §3 pull rule 4,
// ACCESS.md). writeLive reads the rows once for both sections: created records go
// straight into the answer, updated ones are held, already encoded, until the created
// section is closed. What it holds is bounded by heldLimit: past that it stops
// holding and reads the rows again for the updated section — the same snapshot gives
// the same rows — so a large answer (a replacement, a device long offline) keeps a
// flat memory at the cost of the second read that every pull used to make.

// heldLimit bounds the encoded updated records one table's pull holds in memory.
var heldLimit = 1 << 20

// pass is one Scan of a table's live rows in a pull, and what the pull sends of
// each row it reads: sendCreated, sendUpdated, or anything else for nothing.
type pass struct {
	f       Filter
	verdict func(*Row) pullVerdict
	// updatedOnly says that verdict never answers sendCreated (the caller sends
	// created records as updated): nothing needs holding.
	updatedOnly bool
}

// writeLive opens t's created and updated sections and writes into them the rows
// that passes read, leaving enc in the updated section (callers may add to it).
func writeLive(tx ReadTx, t *schema.Table, cols []schema.Column, enc *encoder, passes ...pass) error {
	enc.openCreated()
	if updatedOnly(passes) {
		enc.openUpdated()
		return scanUpdated(tx, t, cols, enc, passes)
	}
	var held []byte
	n, spilled := 0, false
	for _, p := range passes {
		err := tx.Scan(t, cols, p.f, func(r *Row) error {
			switch p.verdict(r) {
			case sendCreated:
				if !enc.lastWas('[') {
					enc.byte(',')
				}
				enc.record(r, cols)
				return enc.err
			case sendUpdated:
				if spilled {
					return nil
				}
				if n > 0 {
					held = append(held, ',')
				}
				held = appendRecord(held, r, cols)
				n++
				if len(held) > heldLimit {
					spilled, held, n = true, nil, 0
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	enc.openUpdated()
	if !spilled {
		enc.bytes(held)
		enc.counts[kindUpdated] += n
		return enc.err
	}
	return scanUpdated(tx, t, cols, enc, passes)
}

// scanUpdated writes into the current section the rows passes send as updated.
func scanUpdated(tx ReadTx, t *schema.Table, cols []schema.Column, enc *encoder, passes []pass) error {
	for _, p := range passes {
		if err := scanRecords(tx, t, cols, p.f, enc, func(r *Row) bool { return p.verdict(r) == sendUpdated }); err != nil {
			return err
		}
	}
	return nil
}

func updatedOnly(passes []pass) bool {
	for _, p := range passes {
		if !p.updatedOnly {
			return false
		}
	}
	return true
}
