package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// A loader sends AdmissionReviews over keep-alive connections, as kube-apiserver does. Each
// worker of a run opens a session of its own and closes it when the run ends.
type loader interface {
	session(target string) (session, error)
	// closeIdle drops the kept connections (before the server they lead to stops).
	closeIdle()
}

type session interface {
	send(ctx context.Context, r request) error
	close()
}

// requestTimeout bounds one admission, as kube-apiserver's webhook timeout does (10 s at most).
const requestTimeout = 10 * time.Second

// Load clients: how the load generator's workers talk to the server. Both speak the same
// wire protocol, a keep-alive HTTPS connection per worker (HTTP/1.1) or one multiplexed
// (HTTP/2); they differ in what they cost the machine the server shares.
const (
	// clientConn drives each worker's connection from the worker's own goroutine: the
	// request is written in one TLS record and the answer read back with net/http's parser.
	// It takes about 30% less CPU from the shared machine than net/http's Transport, whose two
	// goroutines per connection hand every request and answer over channels.
	clientConn = "conn"
	// clientNetHTTP is net/http's Client (kube-apiserver's own webhook client is one).
	clientNetHTTP = "net/http"
)

func tlsConfig(caPEM []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("load: the webhook CA is not PEM")
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// newLoader returns the load client named kind, keeping up to conns connections. HTTP/2 is
// always net/http's: it multiplexes every worker over one connection.
func newLoader(kind string, caPEM []byte, conns int, http2 bool) (loader, error) {
	cfg, err := tlsConfig(caPEM)
	if err != nil {
		return nil, err
	}
	switch {
	case http2 || kind == clientNetHTTP:
		t := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: http2, IdleConnTimeout: time.Minute}
		if !http2 {
			t.MaxIdleConns, t.MaxIdleConnsPerHost, t.MaxConnsPerHost = conns, conns, conns
		}
		return &httpLoader{c: &http.Client{Timeout: requestTimeout, Transport: t}}, nil
	case kind == clientConn:
		cfg.NextProtos = []string{"http/1.1"}
		return &connLoader{cfg: cfg, max: conns, idle: map[string][]*keptConn{}}, nil
	}
	return nil, fmt.Errorf("load: unknown client %q (want %s or %s)", kind, clientConn, clientNetHTTP)
}

// httpLoader sends through a net/http Client shared by all workers.
type httpLoader struct{ c *http.Client }

func (l *httpLoader) session(target string) (session, error) {
	return httpSession{c: l.c, url: target}, nil
}

func (l *httpLoader) closeIdle() { l.c.CloseIdleConnections() }

type httpSession struct {
	c   *http.Client
	url string
}

func (s httpSession) send(ctx context.Context, r request) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(r.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return checkAnswer(resp.StatusCode, data, r)
}

func (httpSession) close() {}

// connLoader keeps the connections of ended sessions per target, so that a run starts on warm
// connections as it would with net/http's pool.
type connLoader struct {
	cfg  *tls.Config
	max  int
	mu   sync.Mutex
	idle map[string][]*keptConn
}

// keptConn is one keep-alive HTTPS connection and its reader.
type keptConn struct {
	tls *tls.Conn
	br  *bufio.Reader
}

func (l *connLoader) session(target string) (session, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("load: target %q: %w", target, err)
	}
	head := "POST " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nContent-Type: application/json\r\nContent-Length: "
	s := &connSession{l: l, target: target, addr: u.Host, head: []byte(head)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.idle[target]); n > 0 {
		s.conn, l.idle[target] = l.idle[target][n-1], l.idle[target][:n-1]
	}
	return s, nil
}

func (l *connLoader) closeIdle() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for target, conns := range l.idle {
		for _, c := range conns {
			_ = c.tls.Close()
		}
		delete(l.idle, target)
	}
}

// put keeps a session's connection for the next run, up to max per target.
func (l *connLoader) put(target string, c *keptConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.idle[target]) < l.max {
		l.idle[target] = append(l.idle[target], c)
		return
	}
	_ = c.tls.Close()
}

type connSession struct {
	l      *connLoader
	target string
	addr   string
	head   []byte // request line and headers up to the Content-Length value
	conn   *keptConn
	buf    []byte
}

// send writes the request in one piece and reads the answer; on any failure the connection
// is dropped and the next send dials a new one, as net/http's Transport would.
func (s *connSession) send(ctx context.Context, r request) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.conn == nil {
		if err := s.dial(ctx); err != nil {
			return err
		}
	}
	status, data, err := s.roundTrip(r)
	if err != nil {
		s.drop()
		return err
	}
	return checkAnswer(status, data, r)
}

// roundTrip sends r and reads the whole answer, so that the connection can carry the next.
func (s *connSession) roundTrip(r request) (int, []byte, error) {
	s.buf = append(s.buf[:0], s.head...)
	s.buf = strconv.AppendInt(s.buf, int64(len(r.body)), 10)
	s.buf = append(s.buf, "\r\n\r\n"...)
	s.buf = append(s.buf, r.body...)
	if err := s.conn.tls.SetDeadline(time.Now().Add(requestTimeout)); err != nil {
		return 0, nil, err
	}
	if _, err := s.conn.tls.Write(s.buf); err != nil {
		return 0, nil, fmt.Errorf("load: writing to %s: %w", s.addr, err)
	}
	resp, err := http.ReadResponse(s.conn.br, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("load: reading from %s: %w", s.addr, err)
	}
	data, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return 0, nil, fmt.Errorf("load: reading from %s: %w", s.addr, err)
	}
	if resp.Close {
		s.drop() // the server will not take another request on it
	}
	return resp.StatusCode, data, nil
}

func (s *connSession) dial(ctx context.Context) error {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: requestTimeout}, Config: s.l.cfg}
	c, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("load: dialling %s: %w", s.addr, err)
	}
	s.conn = &keptConn{tls: c.(*tls.Conn), br: bufio.NewReaderSize(c, 16<<10)}
	return nil
}

func (s *connSession) drop() {
	if s.conn != nil {
		_ = s.conn.tls.Close()
		s.conn = nil
	}
}

func (s *connSession) close() {
	if s.conn != nil {
		s.l.put(s.target, s.conn)
		s.conn = nil
	}
}
