//go:build !linux

package testutil

import "errors"

func mountTmpfs(string, int64) error { return errors.New("tmpfs needs Linux") }

func unmount(string) error { return nil }
