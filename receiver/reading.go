package receiver

import (
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Options.BodyGrace and Options.MinBodyRate.
const (
	DefaultBodyGrace   = 2 * time.Second
	DefaultMinBodyRate = 64 << 10 // bytes per second
)

// Errors of a body read the reading pool cut short.
var (
	// errEvicted: a newer request took the place of this slow one.
	errEvicted = errors.New("body too slow: its place was given to another request")
	// errReadingFull: every reader is on pace and the reading slots or share are taken.
	errReadingFull = errors.New("too many request bodies being read")
)

// readingPool holds the requests whose bodies are being read. Segment's signature covers the
// body, so until it is read a request is unauthenticated: readers get their own slots (apart
// from the requests delivering) and their own share of the memory budget, and must keep up a
// minimum rate after a grace (see bodyReader.extend). When the slots or the share are full, a
// newcomer takes the place of the reader furthest behind that rate, so slow clients exhaust only
// one another, and a body that arrives at a normal rate gets through.
type readingPool struct {
	rate    int64 // minimum bytes per second
	grace   time.Duration
	reading prometheus.Gauge

	mu         sync.Mutex
	head, tail *bodyReader // oldest first
	n          int
	bytes      int64 // reserved by the readers in the pool
}

// bodyReader is one request in the pool.
type bodyReader struct {
	prev, next *bodyReader
	conn       interface{ SetReadDeadline(time.Time) error }
	start      time.Time
	end        time.Time    // the request's own read deadline (readTimeout), never passed
	received   atomic.Int64 // body bytes read so far
	reserved   int64        // bytes counted in the pool's share; under the pool's mu
	evicted    bool         // under the pool's mu
}

func newBodyReader(w http.ResponseWriter, start, end time.Time) *bodyReader {
	br := &bodyReader{start: start, end: end}
	if c, ok := w.(interface{ SetReadDeadline(time.Time) error }); ok {
		br.conn = c // net/http's own writer: no ResponseController to allocate
	} else {
		br.conn = http.NewResponseController(w)
	}
	return br
}

// extend sets the read deadline for a buffer of size bytes: the grace plus the time that many
// bytes take at the minimum rate, from the start, and never past the request's own deadline.
// Each growth of the buffer calls it, so a body must keep arriving to keep being read.
func (p *readingPool) extend(br *bodyReader, size int) {
	deadline := br.start.Add(p.grace + time.Duration(int64(size)*int64(time.Second)/p.rate))
	if !br.end.IsZero() && deadline.After(br.end) {
		deadline = br.end
	}
	_ = br.conn.SetReadDeadline(deadline)
}

// admit adds br, taking the place of the reader furthest behind when all maxReaders slots are
// taken; false when every reader is on pace.
func (p *readingPool) admit(br *bodyReader, maxReaders int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.n >= maxReaders {
		if !p.evictSlowest(br) {
			return false
		}
	}
	br.prev = p.tail
	if p.tail != nil {
		p.tail.next = br
	} else {
		p.head = br
	}
	p.tail = br
	p.n++
	p.reading.Inc()
	return true
}

// reserve counts n more bytes of br's buffer in the readers' share, evicting the readers
// furthest behind to make room.
func (p *readingPool) reserve(br *bodyReader, n, share int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if br.evicted {
		return errEvicted
	}
	for p.bytes+n > share {
		if !p.evictSlowest(br) {
			return errReadingFull
		}
	}
	br.reserved += n
	p.bytes += n
	return nil
}

// leave removes br once its body is read or the read failed.
func (p *readingPool) leave(br *bodyReader) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !br.evicted {
		p.unlink(br)
	}
}

// evictSlowest cuts short the read of the reader furthest behind the minimum rate, other than
// except: its read deadline passes at once, so its handler answers 408. False when none is behind.
func (p *readingPool) evictSlowest(except *bodyReader) bool {
	now := time.Now()
	var slowest *bodyReader
	var worst int64
	for br := p.head; br != nil; br = br.next {
		if br == except {
			continue
		}
		// Bytes received minus bytes due at the minimum rate (the grace is not granted here:
		// it is for when there is room).
		lag := br.received.Load() - p.rate*int64(now.Sub(br.start))/int64(time.Second)
		if lag < worst {
			slowest, worst = br, lag
		}
	}
	if slowest == nil {
		return false
	}
	p.unlink(slowest)
	slowest.evicted = true
	_ = slowest.conn.SetReadDeadline(aLongTimeAgo)
	return true
}

// aLongTimeAgo is a deadline already passed.
var aLongTimeAgo = time.Unix(1, 0)

func (p *readingPool) unlink(br *bodyReader) {
	if br.prev != nil {
		br.prev.next = br.next
	} else {
		p.head = br.next
	}
	if br.next != nil {
		br.next.prev = br.prev
	} else {
		p.tail = br.prev
	}
	br.prev, br.next = nil, nil
	p.n--
	p.bytes -= br.reserved
	p.reading.Dec()
}

// readingShare is what bodies being read may hold of the memory budget: half, or one body of
// maxBodyBytes when that is more, so that the rest stays for requests that authenticated.
func readingShare(budget, maxBodyBytes int64) int64 {
	return min(budget, max(budget/2, maxBodyBytes))
}
