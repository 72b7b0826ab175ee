// Command natsjs is the NATS end of hack/bench-receiver.sh: a real nats-server with JetStream,
// embedded, holding one file-backed stream (SEGMENT, subjects segment.>, 2 minute duplicate
// window) for the receiver to publish to. With -count it instead prints how many messages the
// stream of a running server holds, and exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const stream = "SEGMENT"

func main() {
	addr := flag.String("addr", "127.0.0.1:18085", "listen address")
	storeDir := flag.String("store", "", "JetStream store directory (a temporary one when empty)")
	count := flag.Bool("count", false, "print the stream's message count of the server at -addr and exit")
	flag.Parse()

	if *count {
		js := connect(*addr)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			log.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(info.State.Msgs)
		return
	}

	host, portText, err := net.SplitHostPort(*addr)
	if err != nil {
		log.Fatal(err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		log.Fatal(err)
	}
	if *storeDir == "" {
		dir, err := os.MkdirTemp("", "natsjs-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
		*storeDir = dir
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "bench", Host: host, Port: port, JetStream: true, StoreDir: *storeDir, NoSigs: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		log.Fatal("nats-server did not start")
	}
	js := connect(*addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: stream, Subjects: []string{"segment.>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
	}); err != nil {
		log.Fatal(err)
	}
	cancel()

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	srv.Shutdown()
	srv.WaitForShutdown()
}

func connect(addr string) jetstream.JetStream {
	nc, err := nats.Connect("nats://" + addr)
	if err != nil {
		log.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	return js
}
