package mailcatch

import (
	"bufio"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// batchListener wraps accepted connections in batchConn.
type batchListener struct {
	net.Listener
}

func (l batchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &batchConn{Conn: c, w: bufio.NewWriterSize(c, 4096)}, nil
}

// batchConn holds back the server's replies until the server next waits
// for input, then sends them in one write.
//
// go-smtp flushes every reply on its own. A client that pipelines (RFC 2920)
// sends MAIL, RCPT and DATA together and then waits for all three replies;
// written separately they cost three system calls on each side instead of
// one. Holding replies back is safe because a reply can only matter to the
// client once the server waits for the client's next move, which it does by
// reading, and Read sends everything pending first. For a client that does
// not pipeline, nothing changes but a copy.
type batchConn struct {
	net.Conn

	mu sync.Mutex // guards w; Close can come from another goroutine
	w  *bufio.Writer
	// eof is set once a read has failed: the client closed the
	// connection, or it broke.
	eof atomic.Bool
}

// ended reports whether the client's side of the connection has ended. A
// nil connection (not one of ours) never does.
func (c *batchConn) ended() bool { return c != nil && c.eof.Load() }

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.Write(p)
}

func (c *batchConn) Read(p []byte) (int, error) {
	if err := c.flush(); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	if err != nil {
		c.eof.Store(true)
	}
	return n, err
}

// Close sends pending replies, such as the reply to QUIT, waiting at most a
// second for a client that does not read, and closes the connection.
func (c *batchConn) Close() error {
	c.mu.Lock()
	if c.w.Buffered() > 0 {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		_ = c.w.Flush()
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

func (c *batchConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.w.Buffered() == 0 {
		return nil
	}
	return c.w.Flush()
}
