package postgres_test

import (
	"testing"

	"github.com/melonsync/melonsync/admin/admintest"
)

func TestAdminStore(t *testing.T) {
	testDSN(t)
	admintest.Run(t, func(t *testing.T) admintest.Store { return openTestStore(t) })
}
