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

// Command manager runs the segment-webhook-operator controller manager.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/segment-webhook-operator/segment-webhook-operator/controllers"
	"github.com/segment-webhook-operator/segment-webhook-operator/internal/version"
)

// defaultGCPercent replaces Go's default GOGC of 100 unless GOGC is set. The manager's heap is
// mostly its informer cache, which lives as long as the process, and a controller allocates
// little between events; collecting at 1.5 times the live heap instead of twice keeps the
// resident set about a quarter smaller for a little more GC work while events arrive
// (make bench-operator). Prometheus ships GOGC=75 by default for the same reason.
const defaultGCPercent = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	var (
		opts       controllers.ManagerOptions
		namespaces string
	)
	flag.StringVar(&opts.MetricsAddr, "metrics-bind-address", ":8443",
		"Address of the metrics endpoint (HTTPS unless --metrics-secure=false); 0 disables it.")
	secure := flag.Bool("metrics-secure", true,
		"Serve metrics over HTTPS to callers allowed to get /metrics (TokenReview + SubjectAccessReview); false serves plain, unauthenticated HTTP.")
	flag.StringVar(&opts.MetricsCertDir, "metrics-cert-dir", "",
		"Directory holding tls.crt and tls.key for the metrics server; empty uses a self-signed certificate.")
	flag.BoolVar(&opts.EnableHTTP2, "enable-http2", false, "Allow HTTP/2 on the metrics server.")
	flag.StringVar(&opts.PprofAddr, "pprof-bind-address", "", "Address of net/http/pprof, for profiling; empty disables it.")
	flag.StringVar(&opts.ProbeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes.")
	flag.IntVar(&opts.MaxConcurrentReconciles, "max-concurrent-reconciles", controllers.DefaultMaxConcurrentReconciles, "SegmentWebhooks reconciled in parallel.")
	flag.DurationVar(&opts.SyncPeriod, "sync-period", 0, "How often every SegmentWebhook is reconciled again without a change; 0 keeps the default (10h).")
	flag.BoolVar(&opts.LeaderElect, "leader-elect", false, "Elect a leader so only one replica reconciles at a time.")
	flag.StringVar(&opts.Render.ReceiverImage, "receiver-image", os.Getenv("RECEIVER_IMAGE"),
		"Receiver image used unless a SegmentWebhook sets spec.image (env RECEIVER_IMAGE).")
	allowedImages := flag.String("allowed-receiver-images", os.Getenv("ALLOWED_RECEIVER_IMAGES"),
		"Comma-separated prefixes, or globs (path.Match: * does not cross a /), that a SegmentWebhook's spec.image must match; "+
			"empty allows any image. Whoever may edit a SegmentWebhook otherwise chooses the image that runs with its namespace's Secrets. "+
			"The --receiver-image is always allowed (env ALLOWED_RECEIVER_IMAGES).")
	allowScheduling := flag.Bool("allow-scheduling-overrides", os.Getenv("ALLOW_SCHEDULING_OVERRIDES") != "false",
		"Let SegmentWebhooks set spec.pod nodeSelector, tolerations, affinity and priorityClassName; false refuses them "+
			"(SchedulingNotAllowed) (env ALLOW_SCHEDULING_OVERRIDES).")
	flag.StringVar(&namespaces, "namespaces", os.Getenv("WATCH_NAMESPACES"),
		"Comma-separated namespaces to watch; empty watches all (env WATCH_NAMESPACES).")
	showVersion := flag.Bool("version", false, "Print the version, git commit and Go version, and exit.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Line("manager"))
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	setupLog := ctrl.Log.WithName("setup")

	if opts.Render.ReceiverImage == "" {
		setupLog.Error(nil, "a receiver image is required: set --receiver-image or RECEIVER_IMAGE")
		os.Exit(2)
	}
	opts.InsecureMetrics = !*secure
	opts.Policy.AllowedReceiverImages = splitList(*allowedImages)
	opts.Policy.DenySchedulingOverrides = !*allowScheduling
	opts.Namespaces = splitList(namespaces)

	ctx := ctrl.SetupSignalHandler()
	mgr, err := controllers.NewManager(ctx, ctrl.GetConfigOrDie(), opts)
	if err != nil {
		setupLog.Error(err, "unable to set up the manager")
		os.Exit(1)
	}
	setupLog.Info("starting manager", "receiverImage", opts.Render.ReceiverImage, "namespaces", opts.Namespaces,
		"allowedReceiverImages", opts.Policy.AllowedReceiverImages, "allowSchedulingOverrides", !opts.Policy.DenySchedulingOverrides,
		"metrics", opts.MetricsAddr, "secureMetrics", !opts.InsecureMetrics)
	if err := mgr.Start(ctx); err != nil {
		setupLog.Error(err, "manager stopped with an error")
		os.Exit(1)
	}
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(value string) []string {
	var items []string
	for _, item := range strings.Split(value, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}
