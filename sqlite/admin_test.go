package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/melonsync/melonsync/admin/admintest"
	"github.com/melonsync/melonsync/sqlite"
)

func TestAdminStore(t *testing.T) {
	admintest.Run(t, func(t *testing.T) admintest.Store {
		s, err := sqlite.Open(filepath.Join(t.TempDir(), "admin.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
