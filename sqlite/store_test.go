package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
	"github.com/melonsync/melonsync/sqlite"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) server.Store {
		s, err := sqlite.Open(filepath.Join(t.TempDir(), "server.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
