/*
Copyright 2026 The segment-webhook-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Command pause is the test cluster's pod sandbox process, like Kubernetes' pause: it holds the
// pod's namespaces, reaps the zombies of a shared PID namespace, and exits 0 on SIGTERM or SIGINT.
// hack/images builds it into the pause image (static, CGO-free, like the other binaries).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 {
		// The real pause answers -v; anything else is a mistake.
		if os.Args[1] == "-v" {
			fmt.Println("pause (segment-webhook-operator)")
			return
		}
		fmt.Fprintln(os.Stderr, "usage: pause [-v]")
		os.Exit(2)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	reap() // from here on, exited children are waited for
	fmt.Fprintln(os.Stderr, "pause: waiting for SIGTERM or SIGINT")
	sig := <-stop
	fmt.Fprintf(os.Stderr, "pause: %v, exiting\n", sig)
}
