package http_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/melonsync/melonsync/admin"
	"github.com/melonsync/melonsync/admin/admintest"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/internal/testutil"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/sqlite"

	"github.com/chromedp/chromedp"
)

// TestAdminGroups: with the teams schema's access rules, the admin API lists the
// teams with their members, one team's members and rows, and a table's rows by group.
func TestAdminGroups(t *testing.T) {
	eachAdminStore(t, func(t *testing.T, open func() admintest.Store) {
		e := newTeamsEnv(t, open())
		get := func(path string) string {
			t.Helper()
			r := e.do("GET", path, e.admin(), nil)
			if r.status != 200 {
				t.Fatalf("GET %s: %d %s", path, r.status, r.body)
			}
			return string(r.body)
		}
		var groups struct {
			Kinds []struct {
				Name, Members string
				Tables        []struct{ Table, By string }
				Groups        []struct {
					ID      string
					Members int
				}
			}
		}
		json.Unmarshal([]byte(get("/admin/api/groups")), &groups)
		if len(groups.Kinds) != 1 || groups.Kinds[0].Name != "team" || groups.Kinds[0].Members != "team_members" || len(groups.Kinds[0].Tables) != 4 {
			t.Fatalf("groups: %+v", groups)
		}
		if g := groups.Kinds[0].Groups; len(g) != 2 || g[0].ID != "T1" || g[0].Members != 2 || g[1].ID != "T2" || g[1].Members != 1 {
			t.Errorf("teams: %+v, want T1 (2 members) then T2 (1)", g)
		}
		one := get("/admin/api/groups?kind=team&id=T1")
		for _, want := range []string{`"user":"alice"`, `"user":"bob"`, `{"table":"projects","rows":2,"more":false}`, `{"table":"teams","rows":1,"more":false}`} {
			if !strings.Contains(one, want) {
				t.Errorf("team T1 lacks %s: %s", want, one)
			}
		}
		if strings.Contains(one, "carol") {
			t.Errorf("team T1 lists carol: %s", one)
		}
		recs := get("/admin/api/tables/projects/records?group=T1")
		if !strings.Contains(recs, `"group":"T1"`) || !strings.Contains(recs, `"id":"p2"`) {
			t.Errorf("projects of T1: %s", recs)
		}
		if !strings.Contains(get("/admin/api/overview"), `"access":true`) || !strings.Contains(get("/admin/api/overview"), `"rule":"group","group":"team"`) {
			t.Error("the overview does not say the schema has access rules")
		}
		for path, code := range map[string]int{
			"/admin/api/groups?kind=nope&id=x":                                404,
			"/admin/api/groups?kind=team":                                     400,
			"/admin/api/tables/notes/records?group=T1":                        400,
			"/admin/api/tables/projects/records?group=T1&column=name&value=x": 400,
		} {
			if r := e.do("GET", path, e.admin(), nil); r.status != code {
				t.Errorf("GET %s: %d %s, want %d", path, r.status, r.body, code)
			}
		}
	})
}

// newTeamsEnv serves store with the teams example's schema (access rules) and fills
// it: team T1 (alice, bob; two projects) and T2 (carol).
func newTeamsEnv(t *testing.T, store admintest.Store) *adminEnv {
	t.Helper()
	sch, err := schema.Load(filepath.Join(testutil.Root(), "examples", "teams", "schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Prepare(context.Background(), sch); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	auth, _ := mhttp.NewAuth(secret)
	l := admin.NewLog(store, admin.LogOptions{FlushEvery: time.Hour})
	t.Cleanup(l.Close)
	srv := httptest.NewServer(mhttp.NewHandler(server.New(store, sch), mhttp.Options{Auth: auth, SyncLog: l, Devices: store,
		Admin: &mhttp.AdminOptions{Token: adminToken, Store: store, Log: l}}))
	t.Cleanup(srv.Close)
	e := &adminEnv{env: &env{t: t, srv: srv, auth: auth, store: store}, log: l, store: store}
	alice := e.device("alice", "phone")
	r := e.push(alice, 0, `{"teams":{"created":[{"id":"T1","name":"Crew"}],"updated":[],"deleted":[]},
		"team_members":{"created":[{"id":"m1","team_id":"T1","user_id":"alice"},{"id":"m2","team_id":"T1","user_id":"bob"}],"updated":[],"deleted":[]},
		"projects":{"created":[{"id":"p1","team_id":"T1","name":"Launch"},{"id":"p2","team_id":"T1","name":"Docs"}],"updated":[],"deleted":[]}}`)
	if r.status != 200 || strings.Contains(string(r.body), "Rejected") {
		t.Fatalf("creating a team: %d %s", r.status, r.body)
	}
	if r := e.push(e.device("carol", "pc"), 0, `{"teams":{"created":[{"id":"T2","name":"Solo"}],"updated":[],"deleted":[]},
		"team_members":{"created":[{"id":"m3","team_id":"T2","user_id":"carol"}],"updated":[],"deleted":[]}}`); r.status != 200 {
		t.Fatalf("creating a second team: %d %s", r.status, r.body)
	}
	return e
}

// TestDashboardGroupsInChromium: the groups page lists the teams; one team shows
// its members.
func TestDashboardGroupsInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	e := newTeamsEnv(t, store)
	ctx := browser(t)
	shot := shooter(t, ctx)
	err = chromedp.Do(ctx, chromedp.Navigate(e.srv.URL+"/admin/"), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), adminToken), chromedp.Click(chromedp.CSS(`#login button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(".stat")), chromedp.Click(chromedp.CSS(`a[href="#/groups"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="#/groups?kind=team&id=T1"]`)))
	if err != nil {
		t.Fatal(err)
	}
	shot("groups")
	err = chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`a[href="#/groups?kind=team&id=T1"]`)), chromedp.WaitVisible(chromedp.CSS(`a[href="#/users/bob"]`)))
	if err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "alice") || !strings.Contains(text, "bob") || strings.Contains(text, "carol") {
		t.Errorf("team T1's page:\n%s", text)
	}
	shot("group")
}
