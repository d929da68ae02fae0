package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/melonsync/melonsync/client"
	"github.com/melonsync/melonsync/schema"
)

func ExampleOpen() {
	s, err := schema.Parse([]byte(`{"version": 1, "tables": [{"name": "tasks", "columns": [
		{"name": "name", "type": "string"},
		{"name": "is_done", "type": "boolean", "isIndexed": true}]}]}`))
	if err != nil {
		log.Fatal(err)
	}
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)

	db, err := client.Open(filepath.Join(dir, "app.db"), s) // WatermelonDB's SQLite layout
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()

	// one write transaction: all or nothing
	var id string
	err = db.Write(ctx, func(tx *client.Tx) error {
		t, err := tx.Create("tasks", map[string]any{"name": "Buy milk"})
		if err != nil {
			return err
		}
		id = t["id"].(string) // a WatermelonDB-style random id
		return tx.Update("tasks", id, map[string]any{"is_done": true})
	})
	if err != nil {
		log.Fatal(err)
	}

	// reads see a consistent snapshot and are never blocked by writes
	db.Read(ctx, func(tx *client.Tx) error {
		done, _ := tx.Query("tasks", client.Where(client.Eq("is_done", true)))
		for _, t := range done {
			fmt.Println(t["name"], t["_status"], t["_changed"])
		}
		return nil
	})
	unsynced, _ := db.HasUnsyncedChanges(ctx)
	fmt.Println("unsynced:", unsynced)
	// Output:
	// Buy milk created is_done
	// unsynced: true
}
