package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Group is a kind of group (SPEC §6): each live row of the Members table makes the
// user named in column UserCol a member of the group named in column GroupCol.
type Group struct {
	Name     string
	Members  *Table
	GroupCol string
	UserCol  string
}

// Rule says who reads and writes the rows of one table.
type Rule struct {
	// Kind is Owner (the default), GroupRule or Public.
	Kind RuleKind
	// Group is the kind of group the rows belong to (GroupRule).
	Group *Group
	// By is the column holding the row's group id: a string column, or "id" (GroupRule).
	By string
	// ReadOnly is "write": "none": members read the rows, clients write none of them.
	ReadOnly bool
	// MembersOf is set on the members table of a group kind: its rows make users
	// members of groups of that kind.
	MembersOf *Group
}

// RuleKind is the form of a table's rule.
type RuleKind int

// Rule kinds.
const (
	// Owner: every row belongs to the user who created it (SPEC §3).
	Owner RuleKind = iota
	// GroupRule: every row belongs to a group; its members read and write it.
	GroupRule
	// Public: every user reads every row; clients write none.
	Public
)

// Access is the schema's "access" object (SPEC §6), validated against its tables.
type Access struct {
	// Groups are the kinds of group, by name.
	Groups map[string]*Group
}

// GroupNames returns the names of the group kinds in order.
func (a *Access) GroupNames() []string {
	if a == nil {
		return nil
	}
	out := make([]string, 0, len(a.Groups))
	for n := range a.Groups {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Writable reports whether clients may push rows of t at all.
func (r Rule) Writable() bool { return r.Kind != Public && !r.ReadOnly }

// GroupOf returns the group id of a row of a group table: its id when By is "id",
// else the value of the By column (values aligned with the table's columns), "" when
// the row names no group.
func (t *Table) GroupOf(id string, values []any) string {
	if t.Rule.Kind != GroupRule {
		return ""
	}
	if t.Rule.By == "id" {
		return id
	}
	i, ok := t.index[t.Rule.By]
	if !ok || i >= len(values) {
		return ""
	}
	s, _ := values[i].(string)
	return s
}

// MemberOf returns the user a row of a members table names ("" when none).
func (t *Table) MemberOf(values []any) string {
	g := t.Rule.MembersOf
	if g == nil {
		return ""
	}
	i, ok := t.index[g.UserCol]
	if !ok || i >= len(values) {
		return ""
	}
	s, _ := values[i].(string)
	return s
}

// ParseAccess decodes and validates an "access" object against s and sets the rule
// of every table of s (tables it does not list keep the owner rule). An empty or
// null object resets every table to the owner rule. Errors name the group, table or
// column at fault.
func (s *Schema) ParseAccess(data []byte) error {
	for _, t := range s.Tables {
		t.Rule = Rule{}
	}
	s.Access = nil
	data = bytes.TrimSpace(data)
	if len(data) == 0 || string(data) == "null" {
		return nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return fmt.Errorf("access: must be an object with \"groups\" and \"tables\": %v", err)
	}
	for k := range top {
		if k != "groups" && k != "tables" {
			return fmt.Errorf("access: unknown key %q (expected \"groups\" and \"tables\")", k)
		}
	}
	a := &Access{Groups: map[string]*Group{}}
	rules := map[string]Rule{}
	if err := parseGroups(s, top["groups"], a); err != nil {
		return err
	}
	if err := parseRules(s, top["tables"], a, rules); err != nil {
		return err
	}
	membersOf := map[string]string{}
	for _, name := range a.GroupNames() {
		m := a.Groups[name].Members.Name
		if other, ok := membersOf[m]; ok {
			return fmt.Errorf("access: table %q is the members table of two groups (%q and %q)", m, other, name)
		}
		membersOf[m] = name
	}
	// A members table is a group table of its own group kind: implied when the
	// tables do not list it, refused when they list it otherwise.
	for _, name := range a.GroupNames() {
		g := a.Groups[name]
		want := Rule{Kind: GroupRule, Group: g, By: g.GroupCol}
		r, listed := rules[g.Members.Name]
		if !listed {
			rules[g.Members.Name] = want
			r = want
		} else if r.Kind != GroupRule || r.Group != g || r.By != g.GroupCol {
			return fmt.Errorf("access: group %q: its members table %q must be a group table of that group: {\"group\": %q, \"by\": %q}", name, g.Members.Name, name, g.GroupCol)
		}
		r.MembersOf = g
		rules[g.Members.Name] = r
	}
	for name, r := range rules {
		s.Table(name).Rule = r
	}
	if len(a.Groups) == 0 && len(rules) == 0 {
		return nil
	}
	s.Access = a
	return nil
}

func parseGroups(s *Schema, raw json.RawMessage, a *Access) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var groups map[string]json.RawMessage
	if err := json.Unmarshal(raw, &groups); err != nil {
		return fmt.Errorf("access: \"groups\" must be an object of groups by name: %v", err)
	}
	for _, name := range sortedKeys(groups) {
		graw := groups[name]
		if !nameRE.MatchString(name) {
			return fmt.Errorf("access: group %q: a group name must match ^[a-z_][a-z0-9_]*$", name)
		}
		var g struct {
			Members *string `json:"members"`
			Group   *string `json:"group"`
			User    *string `json:"user"`
		}
		if err := strictUnmarshal(graw, &g); err != nil {
			return fmt.Errorf("access: group %q: %v (expected {\"members\": TABLE, \"group\": COLUMN, \"user\": COLUMN})", name, err)
		}
		if g.Members == nil || *g.Members == "" {
			return fmt.Errorf("access: group %q has no members table (\"members\": TABLE)", name)
		}
		mt := s.Table(*g.Members)
		if mt == nil {
			return fmt.Errorf("access: group %q: members table %q is not a table of the schema", name, *g.Members)
		}
		if g.Group == nil || g.User == nil {
			return fmt.Errorf("access: group %q: \"group\" and \"user\" must name columns of %q", name, mt.Name)
		}
		for _, col := range []string{*g.Group, *g.User} {
			if err := stringColumn(mt, col); err != nil {
				return fmt.Errorf("access: group %q: %v", name, err)
			}
		}
		if *g.Group == *g.User {
			return fmt.Errorf("access: group %q: \"group\" and \"user\" are the same column %q.%q", name, mt.Name, *g.Group)
		}
		a.Groups[name] = &Group{Name: name, Members: mt, GroupCol: *g.Group, UserCol: *g.User}
	}
	return nil
}

func parseRules(s *Schema, raw json.RawMessage, a *Access, rules map[string]Rule) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var tables map[string]json.RawMessage
	if err := json.Unmarshal(raw, &tables); err != nil {
		return fmt.Errorf("access: \"tables\" must be an object of rules by table name: %v", err)
	}
	for _, name := range sortedKeys(tables) {
		traw := tables[name]
		t := s.Table(name)
		if t == nil {
			return fmt.Errorf("access: table %q is not a table of the schema", name)
		}
		var r struct {
			Group  *string `json:"group"`
			By     *string `json:"by"`
			Write  *string `json:"write"`
			Public *bool   `json:"public"`
			Owner  *bool   `json:"owner"`
		}
		if err := strictUnmarshal(traw, &r); err != nil {
			return fmt.Errorf("access: table %q: %v (expected {\"group\": NAME, \"by\": COLUMN}, {\"public\": true} or {\"owner\": true})", name, err)
		}
		var forms []string
		if r.Group != nil || r.By != nil {
			forms = append(forms, "group")
		}
		if r.Public != nil {
			forms = append(forms, "public")
		}
		if r.Owner != nil {
			forms = append(forms, "owner")
		}
		switch {
		case len(forms) == 0:
			return fmt.Errorf("access: table %q: no rule (expected {\"group\": NAME, \"by\": COLUMN}, {\"public\": true} or {\"owner\": true})", name)
		case len(forms) > 1:
			return fmt.Errorf("access: table %q is in two forms (%s): choose one", name, strings.Join(forms, " and "))
		}
		if r.Write != nil && (forms[0] != "group" || *r.Write != "none") {
			return fmt.Errorf("access: table %q: \"write\" may only be \"none\", on a group table", name)
		}
		switch forms[0] {
		case "public":
			if !*r.Public {
				return fmt.Errorf("access: table %q: \"public\" must be true (leave the table out for the owner rule)", name)
			}
			rules[name] = Rule{Kind: Public}
		case "owner":
			if !*r.Owner {
				return fmt.Errorf("access: table %q: \"owner\" must be true", name)
			}
			rules[name] = Rule{Kind: Owner}
		default:
			if r.Group == nil || r.By == nil {
				return fmt.Errorf("access: table %q: a group rule needs both \"group\" and \"by\"", name)
			}
			g := a.Groups[*r.Group]
			if g == nil {
				return fmt.Errorf("access: table %q: group %q is not declared in \"groups\"", name, *r.Group)
			}
			if *r.By != "id" {
				if err := stringColumn(t, *r.By); err != nil {
					return fmt.Errorf("access: table %q: \"by\": %v", name, err)
				}
			}
			rules[name] = Rule{Kind: GroupRule, Group: g, By: *r.By, ReadOnly: r.Write != nil}
		}
	}
	return nil
}

func sortedKeys(m map[string]json.RawMessage) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// stringColumn checks that col is a string column of t.
func stringColumn(t *Table, col string) error {
	c := t.Column(col)
	if c == nil {
		return fmt.Errorf("column %q.%q is not in the schema", t.Name, col)
	}
	if c.Type != String {
		return fmt.Errorf("column %q.%q must be a string column (group and user ids are strings), not %s", t.Name, col, c.Type)
	}
	return nil
}

// strictUnmarshal decodes an object, refusing unknown keys.
func strictUnmarshal(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	return nil
}

// LoadAccess reads an access object from its own file (serve's --access) into s,
// replacing the schema file's "access" object.
func (s *Schema) LoadAccess(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("access: %w", err)
	}
	if err := s.ParseAccess(data); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
