package postgres_test

import (
	"testing"

	"github.com/melonsync/melonsync/server"
	"github.com/melonsync/melonsync/server/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) server.Store { return openTestStore(t) })
}
