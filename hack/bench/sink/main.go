// Command sink is the downstream end of hack/bench-receiver.sh: a bare net/http handler that
// reads the body and answers 200 (after -delay, a target that far away), or (-upstream) an
// httputil.ReverseProxy in front of another sink, as a baseline for what plain forwarding costs.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18081", "listen address")
	upstream := flag.String("upstream", "", "proxy to this URL instead of answering 200")
	delay := flag.Duration("delay", 0, "answer each request after this long")
	flag.Parse()

	var handler http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(*delay)
	})
	if *upstream != "" {
		target, err := url.Parse(*upstream)
		if err != nil {
			log.Fatal(err)
		}
		proxy := httputil.NewSingleHostReverseProxy(target)
		transport := http.DefaultTransport.(*http.Transport).Clone()
		transport.MaxIdleConnsPerHost = 256 // same pooling as the receiver's targets get
		proxy.Transport = transport
		handler = proxy
	}
	server := &http.Server{Addr: *addr, Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(server.ListenAndServe())
}
