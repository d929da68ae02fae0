package http

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// A pull is read from the store into a spool (memory up to a bound, then a temporary
// file), and only then sent: the store's read transaction and its connection are
// given back as soon as the answer is read, however slowly the client reads it.
// Gzipped answers are spooled compressed (100k records: 11.8 MB of JSON, 1.4 MB
// spooled).

// DefaultSpoolMemory is how much of one pull answer (as sent, so gzipped when the
// client accepts it) is kept in memory before the rest goes to a temporary file.
const DefaultSpoolMemory = 1 << 20

// DefaultSendStall is how long sending an answer may make no progress before the
// connection is cut.
const DefaultSendStall = 60 * time.Second

// spool keeps bytes in memory up to max, then in a temporary file in dir.
type spool struct {
	max     int
	dir     string
	pattern string // of the temporary file's name (default "melonsync-pull-*")
	mem     bytes.Buffer
	f       *os.File
	name    string // set while the file still has a name to remove
	n       int64
}

func (s *spool) Write(p []byte) (int, error) {
	if s.f == nil && s.mem.Len()+len(p) <= s.max {
		s.n += int64(len(p))
		return s.mem.Write(p)
	}
	if s.f == nil {
		pattern := s.pattern
		if pattern == "" {
			pattern = "melonsync-pull-*"
		}
		f, err := os.CreateTemp(s.dir, pattern)
		if err != nil {
			return 0, err
		}
		s.f, s.name = f, f.Name()
		if os.Remove(s.name) == nil { // gone with the process, whatever happens
			s.name = ""
		}
		if _, err := s.mem.WriteTo(f); err != nil {
			return 0, err
		}
	}
	n, err := s.f.Write(p)
	s.n += int64(n)
	return n, err
}

// Len returns the number of bytes written.
func (s *spool) Len() int64 { return s.n }

// reader returns the spooled bytes from the start.
func (s *spool) reader() (io.Reader, error) {
	if s.f == nil {
		return bytes.NewReader(s.mem.Bytes()), nil
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return s.f, nil
}

// Close removes the temporary file, if any.
func (s *spool) Close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	if s.name != "" {
		err = errors.Join(err, os.Remove(s.name))
	}
	s.f = nil
	return err
}

// A pull answer is sent while it is spooled: the store's read runs on a goroutine of
// its own, writing into the spool, and the handler sends what the spool holds as it
// grows. The store is still read at its own pace and given back as soon as the answer
// is read, however slowly the client reads; but the client gets its first bytes
// while the server still reads, so that it can work on them (the Go client's streamed
// first sync inserts them) instead of waiting for the whole answer. An answer is
// sent only once its first sendAfter bytes (of JSON, before gzip) are read without
// error: a smaller answer is sent whole or not at all (an error is a clean error
// answer); a read that fails later cuts the connection, so the client sees a body
// cut short, never a complete 200.

// sendAfter is how much of an answer (bytes of JSON) is read before it starts to be
// sent: streamAfter, as for Options.StreamPulls (about 2,000 records; the first bytes
// of a 100k-record answer leave some 20 ms after the read starts).
const sendAfter = streamAfter

// wakeEvery is how many spooled bytes wake the sender up (fewer, larger writes).
const wakeEvery = 32 << 10

// pullSpool is a spool written by one goroutine and followed by another.
type pullSpool struct {
	mu       sync.Mutex
	cond     sync.Cond
	sp       spool
	answered int64 // bytes of the answer written (before gzip)
	woken    int64 // sp.n when the follower was last woken up
	gzipped  bool  // the answer is gzipped (known once answered >= gzipMin)
	done     bool  // the writer has finished, with err
	err      error
}

func newPullSpool(max int, dir string) *pullSpool {
	ps := &pullSpool{sp: spool{max: max, dir: dir}}
	ps.cond.L = &ps.mu
	return ps
}

func (ps *pullSpool) Write(p []byte) (int, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	n, err := ps.sp.Write(p)
	if ps.sp.n-ps.woken >= wakeEvery {
		ps.woken = ps.sp.n
		ps.cond.Broadcast()
	}
	return n, err
}

// wrote notes that n more bytes of the answer were written (gzipped or not).
func (ps *pullSpool) wrote(n int, gzipped bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	before := ps.answered
	ps.answered += int64(n)
	ps.gzipped = gzipped
	if before < sendAfter && ps.answered >= sendAfter {
		ps.cond.Broadcast()
	}
}

// finish ends the answer with the writer's outcome.
func (ps *pullSpool) finish(err error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.done, ps.err = true, err
	ps.cond.Broadcast()
}

// ready waits until the answer can be sent: its first sendAfter bytes are read, or
// it is read whole. It returns whether it is whole, and the writer's error (then
// nothing is to be sent).
func (ps *pullSpool) ready() (whole bool, err error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for !ps.done && ps.answered < sendAfter {
		ps.cond.Wait()
	}
	return ps.done, ps.err
}

// spilled reports whether the answer went to a temporary file.
func (ps *pullSpool) spilled() bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.sp.f != nil
}

// readErr is the writer's error met by a follower: the answer cannot be whole.
type readErr struct{ err error }

func (e *readErr) Error() string { return e.err.Error() }
func (e *readErr) Unwrap() error { return e.err }

// follower reads a pullSpool from the start as it grows; it ends with io.EOF once
// the writer finished, or with a *readErr when it failed.
type follower struct {
	ps  *pullSpool
	off int64
}

func (f *follower) Read(p []byte) (int, error) {
	ps := f.ps
	ps.mu.Lock()
	for ps.sp.n <= f.off && !ps.done {
		ps.cond.Wait()
	}
	n, file, err := ps.sp.n, ps.sp.f, ps.err
	if f.off >= n { // then the writer is done
		ps.mu.Unlock()
		if err != nil {
			return 0, &readErr{err}
		}
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), n-f.off)]
	if file == nil {
		m := copy(p, ps.sp.mem.Bytes()[f.off:])
		ps.mu.Unlock()
		f.off += int64(m)
		return m, nil
	}
	ps.mu.Unlock()
	// The file only grows while the writer runs; its first n bytes are written.
	m, rerr := file.ReadAt(p, f.off)
	f.off += int64(m)
	if m > 0 {
		return m, nil
	}
	if rerr == nil || rerr == io.EOF {
		rerr = io.ErrUnexpectedEOF
	}
	return 0, rerr
}

// Close removes the temporary file, if any; only once the writer is done.
func (ps *pullSpool) Close() error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.sp.Close()
}

// spooledAnswer is a pull answer written into a pull spool: gzipped once it reaches
// gzipMin bytes when the client accepts gzip, as is otherwise.
type spooledAnswer struct {
	sp     *pullSpool
	gzipOK bool
	head   []byte // the first bytes, until the gzip decision
	gz     *gzip.Writer
	direct bool // head was flushed as is: no gzip
}

func (a *spooledAnswer) Write(p []byte) (int, error) {
	n, err := a.write(p)
	if a.gz != nil || a.direct {
		a.sp.wrote(n, a.gz != nil)
	}
	return n, err
}

func (a *spooledAnswer) write(p []byte) (int, error) {
	switch {
	case a.gz != nil:
		return a.gz.Write(p)
	case a.direct:
		return a.sp.Write(p)
	}
	a.head = append(a.head, p...)
	if len(a.head) < gzipMin {
		return len(p), nil
	}
	if a.gzipOK {
		a.gz, _ = gzip.NewWriterLevel(a.sp, gzip.BestSpeed)
		_, err := a.gz.Write(a.head)
		a.head = nil
		return len(p), err
	}
	a.direct = true
	_, err := a.sp.Write(a.head)
	a.head = nil
	return len(p), err
}

// Close finishes the answer in the spool.
func (a *spooledAnswer) Close() error {
	if a.gz != nil {
		return a.gz.Close()
	}
	_, err := a.sp.Write(a.head)
	a.head = nil
	return err
}

// send writes the spooled answer as a 200 (with its length when it is whole),
// following the spool as it grows, and cutting the connection when the client makes
// no progress for stall. An error of the writer met on the way is a *readErr.
func (a *spooledAnswer) send(w http.ResponseWriter, stall time.Duration, whole bool) error {
	ps := a.sp
	ps.mu.Lock()
	gzipped, length := ps.gzipped, ps.sp.n
	ps.mu.Unlock()
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Add("Vary", "Accept-Encoding")
	if gzipped {
		h.Set("Content-Encoding", "gzip")
	}
	if whole {
		h.Set("Content-Length", itoa(int(length)))
	}
	w.WriteHeader(200)
	rc := http.NewResponseController(w)
	src := &follower{ps: ps}
	buf := make([]byte, 64<<10)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			rc.SetWriteDeadline(time.Now().Add(stall))
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			if !whole {
				rc.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
