package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
)

// Conflict policy kinds: what a push does with a record that changed on the server
// after the client's lastPulledAt (SPEC §9).
const (
	// PolicyReject answers 409 conflict, listing the records (the default).
	PolicyReject = "reject"
	// PolicyClientWins writes the pushed record's changed columns over the server's.
	PolicyClientWins = "client-wins"
	// PolicyServerWins keeps the server's record and drops the pushed change.
	PolicyServerWins = "server-wins"
	// PolicyLastWriteWins keeps whole the side whose Column holds the larger number.
	PolicyLastWriteWins = "last-write-wins"
)

// Policy is one table's conflict policy.
type Policy struct {
	// Kind is one of the Policy* constants.
	Kind string
	// Column is the number column that last-write-wins compares ("" otherwise).
	Column string
}

// String returns the policy as the schema file writes it.
func (p Policy) String() string {
	if p.Kind == PolicyLastWriteWins {
		return fmt.Sprintf("last-write-wins(%s)", p.Column)
	}
	if p.Kind == "" {
		return PolicyReject
	}
	return p.Kind
}

// Policy returns the conflict policy of the named table (reject when the schema's
// "conflicts" object does not name it).
func (s *Schema) Policy(table string) Policy {
	if p, ok := s.conflicts[table]; ok {
		return p
	}
	return Policy{Kind: PolicyReject}
}

// Policies returns the tables whose policy is not reject, with their policies.
func (s *Schema) Policies() map[string]Policy {
	out := make(map[string]Policy, len(s.conflicts))
	for k, v := range s.conflicts {
		if v.Kind != PolicyReject {
			out[k] = v
		}
	}
	return out
}

// SetPolicies replaces the conflict policies after checking each against the
// schema: the table must exist, and a last-write-wins column must be one of its
// number columns.
func (s *Schema) SetPolicies(policies map[string]Policy) error {
	names := make([]string, 0, len(policies))
	for name := range policies {
		names = append(names, name)
	}
	sort.Strings(names)
	out := make(map[string]Policy, len(policies))
	for _, name := range names {
		p := policies[name]
		t := s.Table(name)
		if t == nil {
			return fmt.Errorf("schema: \"conflicts\": unknown table %q", name)
		}
		switch p.Kind {
		case PolicyReject, PolicyClientWins, PolicyServerWins:
			if p.Column != "" {
				return fmt.Errorf("schema: \"conflicts\".%s: policy %q takes no column", name, p.Kind)
			}
		case PolicyLastWriteWins:
			c := t.Column(p.Column)
			if c == nil {
				return fmt.Errorf("schema: \"conflicts\".%s: last-write-wins column %q is not a column of table %q", name, p.Column, name)
			}
			if c.Type != Number {
				return fmt.Errorf("schema: \"conflicts\".%s: last-write-wins column %q must be a number column, not %s", name, p.Column, c.Type)
			}
		default:
			return fmt.Errorf("schema: \"conflicts\".%s: unknown policy %q (expected \"reject\", \"client-wins\", \"server-wins\" or {\"last-write-wins\": COLUMN})", name, p.Kind)
		}
		out[name] = p
	}
	s.conflicts = out
	return nil
}

// ParsePolicies decodes a "conflicts" object: {table: "reject" | "client-wins" |
// "server-wins" | {"last-write-wins": COLUMN}}. It checks the form only; SetPolicies
// checks it against a schema.
func ParsePolicies(raw json.RawMessage) (map[string]Policy, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] != '{' {
		return nil, fmt.Errorf("schema: \"conflicts\" must be an object {table: policy}")
	}
	var items map[string]json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("schema: \"conflicts\": %v", err)
	}
	out := make(map[string]Policy, len(items))
	for name, item := range items {
		item = bytes.TrimSpace(item)
		var kind string
		if len(item) > 0 && item[0] == '"' {
			if err := json.Unmarshal(item, &kind); err != nil {
				return nil, fmt.Errorf("schema: \"conflicts\".%s: %v", name, err)
			}
			if kind == PolicyLastWriteWins {
				return nil, fmt.Errorf("schema: \"conflicts\".%s: last-write-wins needs its column: {\"last-write-wins\": \"updated_at\"}", name)
			}
			out[name] = Policy{Kind: kind}
			continue
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(item, &obj); err != nil || obj == nil {
			return nil, fmt.Errorf("schema: \"conflicts\".%s must be a policy name or {\"last-write-wins\": COLUMN}", name)
		}
		col, ok := obj[PolicyLastWriteWins]
		if !ok || len(obj) != 1 {
			return nil, fmt.Errorf("schema: \"conflicts\".%s: an object policy must be exactly {\"last-write-wins\": COLUMN}", name)
		}
		var c string
		if err := json.Unmarshal(col, &c); err != nil || c == "" {
			return nil, fmt.Errorf("schema: \"conflicts\".%s: the last-write-wins column must be a column name", name)
		}
		out[name] = Policy{Kind: PolicyLastWriteWins, Column: c}
	}
	return out, nil
}

// marshalPolicies writes the policies in the schema file's form (nil when none).
func (s *Schema) marshalPolicies() map[string]any {
	if len(s.conflicts) == 0 {
		return nil
	}
	out := make(map[string]any, len(s.conflicts))
	for name, p := range s.conflicts {
		if p.Kind == PolicyLastWriteWins {
			out[name] = map[string]string{PolicyLastWriteWins: p.Column}
		} else {
			out[name] = p.Kind
		}
	}
	return out
}

// ColumnIndex returns the position of the named column in t.Columns, or -1.
func (t *Table) ColumnIndex(name string) int {
	if i, ok := t.index[name]; ok {
		return i
	}
	return -1
}
