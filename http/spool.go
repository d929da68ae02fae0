package http

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"os"
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

// spooledAnswer is a pull answer written into a spool: gzipped once it reaches
// gzipMin bytes when the client accepts gzip, as is otherwise.
type spooledAnswer struct {
	sp     *spool
	gzipOK bool
	head   []byte // the first bytes, until the gzip decision
	gz     *gzip.Writer
	direct bool // head was flushed as is: no gzip
}

func (a *spooledAnswer) Write(p []byte) (int, error) {
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

// send writes the spooled answer as a 200 with its length, cutting the connection
// when the client makes no progress for stall.
func (a *spooledAnswer) send(w http.ResponseWriter, stall time.Duration) error {
	src, err := a.sp.reader()
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Add("Vary", "Accept-Encoding")
	if a.gz != nil {
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Length", itoa(int(a.sp.Len())))
	w.WriteHeader(200)
	rc := http.NewResponseController(w)
	buf := make([]byte, 64<<10)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			rc.SetWriteDeadline(time.Now().Add(stall))
			if _, err := w.Write(buf[:n]); err != nil {
				return err
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
