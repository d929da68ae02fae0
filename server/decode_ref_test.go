package server

// The map-based decoder that DecodePush used before the one-pass decoder (stream.go),
// kept as the reference the differential tests and fuzz targets compare against:
// decodePushRef and decodeChangesRef are DecodePush and DecodeChanges as they were.

import (
	"encoding/json"

	"github.com/melonsync/melonsync"
	"github.com/melonsync/melonsync/schema"
)

func decodePushRef(s *schema.Schema, body []byte) (*PushParams, error) {
	var top map[string]json.RawMessage
	if err := unmarshalObject(body, &top); err != nil {
		return nil, invalid("body: %v", err)
	}
	raw, ok := top["lastPulledAt"]
	if !ok {
		return nil, invalid("lastPulledAt is required")
	}
	lpa, isNull, err := DecodeTimestamp(raw)
	if err != nil || isNull {
		return nil, invalid("lastPulledAt must be a non-negative integer")
	}
	changes, ok := top["changes"]
	if !ok {
		return nil, invalid("changes is required")
	}
	p, err := decodeChangesRef(s, changes)
	if err != nil {
		return nil, err
	}
	p.LastPulledAt = lpa
	return p, nil
}

func decodeChangesRef(s *schema.Schema, raw json.RawMessage) (*PushParams, error) {
	if p, ok := decodeChangesFast(s, raw); ok {
		return p, nil
	}
	return decodeChangesChecked(s, raw)
}

// decodeChangesFast decodes well-formed changes in one pass. It gives up (false) at
// the first thing it does not like, and decodeChangesChecked then finds and names it.
func decodeChangesFast(s *schema.Schema, raw json.RawMessage) (*PushParams, bool) {
	var tables map[string]map[string][]any
	if err := json.Unmarshal(raw, &tables); err != nil || tables == nil {
		return nil, false
	}
	p := &PushParams{}
	seen := map[string]bool{}
	found := 0
	for _, t := range s.Tables {
		parts, ok := tables[t.Name]
		if !ok {
			continue
		}
		found++
		if parts == nil {
			return nil, false
		}
		tp := TablePush{Table: t}
		for k, items := range parts {
			switch k {
			case "created", "updated":
				recs := make([]PushedRecord, 0, len(items))
				for _, item := range items {
					m, ok := item.(map[string]any)
					if !ok {
						return nil, false
					}
					rec, err := recordFromMap(t, m)
					if err != nil || seen[t.Name+"\x00"+rec.ID] {
						return nil, false
					}
					seen[t.Name+"\x00"+rec.ID] = true
					recs = append(recs, rec)
				}
				if k == "created" {
					tp.Created = recs
				} else {
					tp.Updated = recs
				}
			case "deleted":
				for _, item := range items {
					id, ok := item.(string)
					if !ok || !melonsync.ValidID(id) || seen[t.Name+"\x00"+id] {
						return nil, false
					}
					seen[t.Name+"\x00"+id] = true
					tp.Deleted = append(tp.Deleted, id)
				}
			default:
				return nil, false
			}
		}
		if len(tp.Created)+len(tp.Updated)+len(tp.Deleted) > 0 {
			p.Tables = append(p.Tables, tp)
		}
	}
	if found != len(tables) {
		return nil, false // unknown tables
	}
	return p, true
}
