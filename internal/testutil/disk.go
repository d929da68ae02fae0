package testutil

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// SmallDisk mounts a file system of size bytes (a tmpfs) and returns its directory,
// unmounted when t ends: tests of a full disk fill it for real. It skips the test
// where it cannot mount one (not Linux, not root).
func SmallDisk(t TB, size int64) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "melonsync-disk-")
	if err != nil {
		t.Fatal(err)
	}
	// Readable by others: a PostgreSQL server's own user may keep a tablespace here.
	os.Chmod(dir, 0o755)
	if err := mountTmpfs(dir, size); err != nil {
		os.Remove(dir)
		t.Skip("cannot mount a small file system (needs root on Linux):", err)
	}
	t.Cleanup(func() {
		if err := unmount(dir); err != nil {
			t.Logf("unmount %s: %v", dir, err)
			return
		}
		os.Remove(dir)
	})
	return dir
}

// FillDisk writes a file into dir until the file system has no room left (ENOSPC)
// and returns a func that removes it. The file is removed when t ends in any case.
func FillDisk(t TB, dir string) (free func()) {
	t.Helper()
	name := filepath.Join(dir, "filler")
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for size := len(buf); size > 0; {
		if _, err := f.Write(buf[:size]); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				f.Close()
				t.Fatal(err)
			}
			size /= 2 // fill the last blocks too
		}
	}
	f.Close()
	free = func() { os.Remove(name) }
	t.Cleanup(free)
	return free
}

// PostgresTablespace creates a tablespace in dir (a directory of SmallDisk) on the
// server of dsn and returns its name and dsn with default_tablespace set to it, so
// that a store opened with that DSN keeps its tables there. The tablespace is dropped
// when t ends, so register it before the schema that uses it (cleanups run in
// reverse order). It skips the test when the server cannot use dir: it is not on
// this machine, or runs as a user this machine does not have.
func PostgresTablespace(t TB, dsn, dir string) (name, tsDSN string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if h := u.Hostname(); h != "127.0.0.1" && h != "localhost" && h != "::1" && h != "" {
		t.Skip("the PostgreSQL server is not on this machine")
	}
	pg, err := user.Lookup("postgres")
	if err != nil {
		t.Skip("no postgres user on this machine:", err)
	}
	loc := filepath.Join(dir, "pg")
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	if err := os.Mkdir(loc, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(loc, uid, gid); err != nil {
		t.Skip("cannot give the tablespace directory to postgres:", err)
	}
	name = "melon_test_ts_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLESPACE `+name+` LOCATION '`+loc+`'`); err != nil {
		t.Skip("cannot create a tablespace on a small file system:", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Logf("drop tablespace %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		// DROP TABLESPACE waits for a checkpoint to remove the files of dropped tables.
		if _, err := conn.Exec(ctx, `DROP TABLESPACE IF EXISTS `+name); err != nil {
			t.Logf("drop tablespace %s: %v", name, err)
		}
	})
	q := u.Query()
	q.Set("default_tablespace", name)
	u.RawQuery = q.Encode()
	return name, u.String()
}

func itoa(n int64) string { return fmt.Sprint(n) }
