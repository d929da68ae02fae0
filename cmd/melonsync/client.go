package main

import (
	"context"
	"errors"
	"io"
)

// runClient runs "melonsync client …".
func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("melonsync client: not available in this build")
}
