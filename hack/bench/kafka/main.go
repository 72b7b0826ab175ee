// Command kafka is the Kafka end of hack/bench-receiver.sh: franz-go's in-process Kafka-protocol
// broker (kfake) on a fixed port, with the topic the receiver produces to (3 partitions). It runs
// until killed.
package main

import (
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	port := flag.Int("port", 18095, "listen port (127.0.0.1)")
	topic := flag.String("topic", "segment-events", "topic to create")
	flag.Parse()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(*port), kfake.SeedTopics(3, *topic))
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	<-stop
}
