package transport_test

import (
	"context"
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/melonsync/melonsync/client"
	mhttp "github.com/melonsync/melonsync/http"
	"github.com/melonsync/melonsync/schema"
	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/sqlite"
	"github.com/melonsync/melonsync/transport"
)

// Two Go clients of one user sync through a melonsync server: the second one follows
// the server's live updates with a scheduler, so the first one's change reaches it
// without polling.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	s, err := schema.Load("../examples/todo/schema.json")
	if err != nil {
		log.Fatal(err)
	}

	// The server: a SQLite store, the sync service and its HTTP handler.
	store, err := sqlite.Open(filepath.Join(dir, "server.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := store.Prepare(ctx, s); err != nil {
		log.Fatal(err)
	}
	auth, _ := mhttp.NewAuth([]byte("example-secret-0123456789abcdef"))
	handler := mhttp.NewHandler(server.New(store, s), mhttp.Options{Auth: auth})
	srv := httptest.NewServer(handler)
	defer srv.Close()
	defer handler.Close() // ends live-update streams
	token, _ := auth.Mint("alice", time.Hour)

	// A client: a local database and the HTTP transport.
	open := func(name string) (*client.DB, *transport.Client) {
		db, err := client.Open(filepath.Join(dir, name), s)
		if err != nil {
			log.Fatal(err)
		}
		device, _ := client.DeviceID(ctx, db) // a stable id kept in the database
		remote, err := transport.NewClient(srv.URL, transport.StaticToken(token), device)
		if err != nil {
			log.Fatal(err)
		}
		return db, remote
	}
	laptop, laptopRemote := open("laptop.db")
	defer laptop.Close()
	phone, phoneRemote := open("phone.db")
	defer phone.Close()

	// The phone syncs in the background: at start, after local changes, when the
	// server says something changed, and every 5 minutes.
	synced := make(chan client.SyncReport, 8)
	sched := client.NewScheduler(phone, client.SchedulerOptions{
		Sync:   phoneRemote.Options(),
		Listen: phoneRemote.Listen,
		OnSync: func(r client.SyncReport) { synced <- r },
	})
	if err := sched.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer sched.Stop(ctx)
	<-synced // the first sync

	// The laptop works offline, then syncs once.
	err = laptop.Write(ctx, func(tx *client.Tx) error {
		_, err := tx.Create("tasks", map[string]any{"name": "Buy milk"})
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := client.Synchronize(ctx, laptop, laptopRemote.Options()); err != nil {
		log.Fatal(err)
	}

	// The phone hears of it and pulls it.
	r := <-synced
	fmt.Println("phone synced because of:", r.Trigger)
	phone.Read(ctx, func(tx *client.Tx) error {
		tasks, _ := tx.Query("tasks", client.Query{})
		for _, t := range tasks {
			fmt.Println(t["name"], t["_status"])
		}
		return nil
	})
	// Output:
	// phone synced because of: server changes
	// Buy milk synced
}
