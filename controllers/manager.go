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

package controllers

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// ManagerOptions are the operator's settings; cmd/manager fills them from its flags.
type ManagerOptions struct {
	Render RenderOptions
	// Policy restricts the receiver image and scheduling overrides SegmentWebhooks may set.
	Policy Policy
	// Namespaces to watch; empty watches all.
	Namespaces []string
	// MetricsAddr serves /metrics; "0" disables it.
	MetricsAddr string
	// InsecureMetrics serves metrics over plain HTTP without authentication. By default they are
	// served over HTTPS, and only to callers whose token may get the /metrics non-resource URL
	// (the metrics-reader ClusterRole), checked with TokenReviews and SubjectAccessReviews.
	InsecureMetrics bool
	// MetricsCertDir holds tls.crt and tls.key; empty uses a self-signed certificate.
	MetricsCertDir string
	// EnableHTTP2 for the metrics server; off by default against HTTP/2 rapid-reset attacks.
	EnableHTTP2 bool
	// PprofAddr serves net/http/pprof; empty disables it.
	PprofAddr string
	// ProbeAddr serves /healthz and /readyz; "0" disables them.
	ProbeAddr   string
	LeaderElect bool
	// MaxConcurrentReconciles defaults to DefaultMaxConcurrentReconciles.
	MaxConcurrentReconciles int
	// SyncPeriod is how often every SegmentWebhook is reconciled again; 0 keeps
	// controller-runtime's default (10 hours).
	SyncPeriod time.Duration
}

// apiRetryInterval is how often a starting manager asks an API server that does not answer.
const apiRetryInterval = 2 * time.Second

// Scheme holds the types the manager reads and writes.
func Scheme() *runtime.Scheme {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(segmentv1alpha1.AddToScheme(scheme))
	utilruntime.Must(gatewayv1.Install(scheme))
	return scheme
}

// NewManager builds the controller manager with the SegmentWebhook controller registered: the one
// wiring used by cmd/manager, the demo and the tests.
func NewManager(ctx context.Context, cfg *rest.Config, opts ManagerOptions) (ctrl.Manager, error) {
	cacheOpts := cache.Options{ByObject: CacheByObject()}
	// The API server may be down when the manager starts (an outage also ends its leader lease,
	// which restarts it): waiting for it here keeps the pod running, unready, instead of a crash
	// loop whose growing back-off would delay recovery by minutes after the API server returns.
	var gatewayAPI bool
	err := wait.PollUntilContextCancel(ctx, apiRetryInterval, true, func(context.Context) (bool, error) {
		var err error
		if gatewayAPI, err = AddGatewayCache(cfg, cacheOpts.ByObject); err != nil {
			ctrl.Log.WithName("setup").Info("waiting for the API server", "error", err.Error())
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("discovering the Gateway API: %w", err)
	}
	if opts.SyncPeriod > 0 {
		cacheOpts.SyncPeriod = &opts.SyncPeriod
	}
	if len(opts.Namespaces) > 0 {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range opts.Namespaces {
			cacheOpts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	metrics := metricsserver.Options{BindAddress: opts.MetricsAddr}
	if !opts.InsecureMetrics {
		metrics.SecureServing = true
		metrics.FilterProvider = filters.WithAuthenticationAndAuthorization
		metrics.CertDir = opts.MetricsCertDir
	}
	if !opts.EnableHTTP2 {
		metrics.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
	}
	probeAddr := opts.ProbeAddr
	if probeAddr == "" {
		probeAddr = "0"
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 Scheme(),
		Cache:                  cacheOpts,
		Metrics:                metrics,
		HealthProbeBindAddress: probeAddr,
		PprofBindAddress:       opts.PprofAddr,
		LeaderElection:         opts.LeaderElect,
		LeaderElectionID:       "segment-webhook-operator.webhook-operator.io",
		// The manager exits right after losing the lease, so releasing it on shutdown is safe
		// and lets a new leader start at once during rollouts.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return nil, err
	}
	r := NewSegmentWebhookReconciler(mgr, opts.Render)
	r.Policy = opts.Policy
	r.namespaces = cacheOpts.DefaultNamespaces
	r.gatewayAPI = gatewayAPI
	if opts.MaxConcurrentReconciles > 0 {
		r.MaxConcurrentReconciles = opts.MaxConcurrentReconciles
	}
	if err := r.SetupWithManager(ctx, mgr); err != nil {
		return nil, err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}
