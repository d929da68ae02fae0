package http

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// Server is an http.Server with the timeouts a sync server wants.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen binds addr (e.g. "127.0.0.1:8080", or port 0 for any free port).
func Listen(addr string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      10 * time.Minute, // huge first syncs stream for a while
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}}
	if c, ok := h.(interface{ Close() }); ok {
		s.srv.RegisterOnShutdown(c.Close) // end event streams, or Shutdown waits for them
	}
	return s, nil
}

// Addr returns the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until Shutdown; it returns nil after a graceful shutdown.
func (s *Server) Serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and waits for requests in flight, up to
// ctx's deadline.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
