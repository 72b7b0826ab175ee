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

// Command kubectl-swh is a kubectl plugin for SegmentWebhooks: `kubectl swh send` posts a signed
// sample request exactly as Segment would and explains the answer; `kubectl swh status` shows
// the conditions, children, recent events and the settings to paste into Segment.
//
//	go install ./cmd/kubectl-swh    (or make build: bin/kubectl-swh), then put it on PATH.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cmd := newRootCommand(os.Stdout, os.Stderr)
	if err := cmd.ExecuteContext(ctx); err != nil {
		var answered *notDeliveredError
		if !errors.As(err, &answered) {
			fmt.Fprintln(os.Stderr, "error:", err)
		}
		os.Exit(1)
	}
}

// notDeliveredError is a non-2xx answer: it has been printed and explained already, and only
// sets the exit code.
type notDeliveredError struct{ code int }

func (e *notDeliveredError) Error() string { return fmt.Sprintf("the receiver answered %d", e.code) }

// cli holds what every subcommand needs: the kubeconfig flags and the output streams.
type cli struct {
	flags    *genericclioptions.ConfigFlags
	out, err io.Writer
}

func newRootCommand(out, errOut io.Writer) *cobra.Command {
	c := &cli{flags: genericclioptions.NewConfigFlags(true), out: out, err: errOut}
	root := &cobra.Command{
		Use:         "kubectl-swh",
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl swh"},
		Short:       "Check a SegmentWebhook from the terminal: send a signed Segment request, show its status",
		// --version, and the version subcommand, print "kubectl swh version <version> (commit …)".
		Version:       version.Get().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	root.SetErr(errOut)
	c.flags.AddFlags(root.PersistentFlags())
	root.AddCommand(newSendCommand(c), newStatusCommand(c), &cobra.Command{
		Use:   "version",
		Short: "Print the version, git commit and Go version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "kubectl swh version "+version.Get().String())
		},
	})
	return root
}

// client returns a client for the user's kubeconfig and the namespace to use (-n, else the
// context's).
func (c *cli) client() (client.Client, string, error) {
	cfg, err := c.flags.ToRESTConfig()
	if err != nil {
		return nil, "", err
	}
	ns, _, err := c.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, "", err
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(segmentv1alpha1.AddToScheme(scheme))
	utilruntime.Must(gatewayv1.Install(scheme))
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, "", err
	}
	return cl, ns, nil
}

func (c *cli) printf(format string, args ...any) { fmt.Fprintf(c.out, format, args...) }
