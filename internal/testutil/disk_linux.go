package testutil

import "syscall"

// mountTmpfs mounts a tmpfs of size bytes at dir (root only).
func mountTmpfs(dir string, size int64) error {
	return syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+itoa(size)+",mode=0755")
}

// unmount detaches the file system at dir, even while files on it are open.
func unmount(dir string) error {
	return syscall.Unmount(dir, syscall.MNT_DETACH)
}
