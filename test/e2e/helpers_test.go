//go:build e2e

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

package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/internal/segmentsim"
)

// team is one namespace with a sink pod behind a Service and a SegmentWebhook delivering to it.
type team struct {
	ns, name string
	secret   string // the shared secret Segment signs with
	sinkPod  string // the sink pod's IP: the test reads what it received there
}

const secretName = "segment"

// restrictedContainer meets the restricted Pod Security Standard.
func restrictedContainer() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To(int64(65532)),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// newTeam creates the namespace (enforcing the restricted Pod Security Standard), the sink and
// the SegmentWebhook, and waits until the receivers are Ready.
func newTeam(ns string, replicas int32) *team {
	t := &team{ns: ns, name: "events", secret: "first-secret"}
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
	}}})).To(Succeed())

	labels := map[string]string{"app": "sink"}
	Expect(k8s.Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "sink", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name: "sink", Image: sinkImage, ImagePullPolicy: corev1.PullNever,
						Args:            []string{"-delay=20ms"},
						Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
						ReadinessProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}, PeriodSeconds: 1},
						SecurityContext: restrictedContainer(),
					}},
				},
			},
		},
	})).To(Succeed())
	sinkSvc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "sink", Namespace: ns},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromString("http")}}},
	}
	Expect(k8s.Create(ctx, sinkSvc)).To(Succeed())
	Expect(node.WaitDeploymentAvailable(ctx, ns, "sink", 2*time.Minute)).To(Succeed())
	pods := &corev1.PodList{}
	Expect(k8s.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels(labels))).To(Succeed())
	Expect(pods.Items).To(HaveLen(1))
	t.sinkPod = pods.Items[0].Status.PodIP

	// Two keys: during a rotation Segment may still sign with the previous secret.
	Expect(k8s.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: secretName, Namespace: ns},
		StringData: map[string]string{"current": t.secret, "previous": t.secret},
	})).To(Succeed())
	swh := &segmentv1alpha1.SegmentWebhook{
		ObjectMeta: metav1.ObjectMeta{Name: t.name, Namespace: ns},
		Spec: segmentv1alpha1.SegmentWebhookSpec{
			SecretRefs: []segmentv1alpha1.SecretKeyRef{{Name: secretName, Key: "current"}, {Name: secretName, Key: "previous"}},
			Targets: []segmentv1alpha1.Target{{
				Name: "sink",
				// No cluster DNS runs on this node: the target is the sink Service's cluster IP.
				HTTP: &segmentv1alpha1.HTTPTarget{URL: fmt.Sprintf("http://%s:8080/segment", sinkSvc.Spec.ClusterIP)},
			}},
			Replicas: ptr.To(replicas),
		},
	}
	Expect(k8s.Create(ctx, swh)).To(Succeed())
	return t
}

// swh reads the team's SegmentWebhook.
func (t *team) swh() *segmentv1alpha1.SegmentWebhook {
	swh := &segmentv1alpha1.SegmentWebhook{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: t.ns, Name: t.name}, swh)).To(Succeed())
	return swh
}

// update changes the SegmentWebhook's spec, retrying on conflicts.
func (t *team) update(change func(*segmentv1alpha1.SegmentWebhook)) {
	Eventually(func() error {
		swh := t.swh()
		change(swh)
		return k8s.Update(ctx, swh)
	}).Should(Succeed())
}

func (t *team) waitReady(timeout time.Duration) {
	_, err := node.Kubectl(ctx, "wait", "--for=condition=Ready", "-n", t.ns, "segmentwebhook/"+t.name,
		fmt.Sprintf("--timeout=%ds", int(timeout.Seconds())))
	Expect(err).NotTo(HaveOccurred())
}

// receiverService is the receivers' Service.
func (t *team) receiverService() *corev1.Service {
	svc := &corev1.Service{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: t.ns, Name: t.name + "-receiver"}, svc)).To(Succeed())
	return svc
}

// url is the webhook URL through the receivers' Service, as status.address.url gives it, with the
// host resolved to the Service's cluster IP (what cluster DNS would answer).
func (t *team) url() string {
	addr := t.swh().Status.Address
	Expect(addr).NotTo(BeNil())
	svc := t.receiverService()
	host := svc.Name + "." + svc.Namespace + ".svc"
	Expect(addr.URL).To(ContainSubstring(host), "status.address.url names the receivers' Service")
	rest := addr.URL[strings.Index(addr.URL, host)+len(host):]
	rest = strings.TrimPrefix(rest, ".cluster.local")
	return "http://" + svc.Spec.ClusterIP + rest
}

func (t *team) receiverPods() []corev1.Pod {
	pods := &corev1.PodList{}
	Expect(k8s.List(ctx, pods, client.InNamespace(t.ns), client.MatchingLabels{"segment.webhook-operator.io/name": t.name})).To(Succeed())
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && strings.HasPrefix(p.Name, t.name+"-receiver-") {
			out = append(out, p)
		}
	}
	return out
}

func (t *team) deployment() *appsv1.Deployment {
	d := &appsv1.Deployment{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: t.ns, Name: t.name + "-receiver"}, d)).To(Succeed())
	return d
}

// waitRolledOut waits until the Deployment has rolled out and exactly its replicas run, ready,
// with no pod left terminating: right after a pod is deleted or killed, the Deployment's status
// still says all is well.
func (t *team) waitRolledOut() {
	Expect(node.WaitDeploymentAvailable(ctx, t.ns, t.name+"-receiver", 3*time.Minute)).To(Succeed())
	want := int(ptr.Deref(t.deployment().Spec.Replicas, 1))
	Eventually(func() string {
		pods := &corev1.PodList{}
		Expect(k8s.List(ctx, pods, client.InNamespace(t.ns), client.MatchingLabels{"segment.webhook-operator.io/name": t.name})).To(Succeed())
		if len(pods.Items) != want || countReady(pods.Items) != want {
			return fmt.Sprintf("%d pods, %d ready, want %d", len(pods.Items), countReady(pods.Items), want)
		}
		return ""
	}).WithTimeout(3 * time.Minute).Should(BeEmpty())
}

// received is what the sink has received: messageId to the number of deliveries.
func (t *team) received() map[string]int {
	resp, err := http.Get("http://" + t.sinkPod + ":8080/received")
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	got := map[string]int{}
	Expect(json.NewDecoder(resp.Body).Decode(&got)).To(Succeed())
	return got
}

func (t *team) sender(secret string) *segmentsim.Sender {
	return segmentsim.NewSender(t.url(), secret, segmentsim.Config{
		Concurrency: 8, AttemptTimeout: 5 * time.Second,
		InitialBackoff: 200 * time.Millisecond, MaxBackoff: 2 * time.Second, GiveUpAfter: 2 * time.Minute,
	})
}

// traffic is a Segment-like sender running in the background.
type traffic struct {
	t      *team
	sender *segmentsim.Sender
	reqs   []segmentsim.Request
	done   chan []segmentsim.Outcome
}

// startTraffic sends events in requests spread over pace, as Segment would, retrying.
func (t *team) startTraffic(prefix string, events int, pace time.Duration) *traffic {
	tr := &traffic{t: t, sender: t.sender(t.secret), done: make(chan []segmentsim.Outcome, 1),
		reqs: segmentsim.MakeRequests(prefix, events, rand.New(rand.NewPCG(uint64(events), 7)))}
	go func() {
		defer GinkgoRecover()
		tr.done <- tr.sender.Run(tr.reqs, pace)
	}()
	return tr
}

// report is what a sender saw and what reached the sink.
type report struct {
	name                                               string
	events, requests, attempts, c2xx, c5xx, c429, nets int64
	lost, duplicates                                   int
}

func (r report) String() string {
	return fmt.Sprintf("%-34s events %5d  requests %4d  2xx %4d  5xx %3d  429 %3d  net errors %3d  retries %4d  lost %d  duplicates %d",
		r.name, r.events, r.requests, r.c2xx, r.c5xx, r.c429, r.nets, r.attempts-r.requests, r.lost, r.duplicates)
}

var reports []report

// wait ends the traffic and checks the promise: every event of a request that got a 2xx is at the
// sink. It returns the figures.
func (tr *traffic) wait(name string) report {
	var outcomes []segmentsim.Outcome
	Eventually(tr.done).WithTimeout(4 * time.Minute).Should(Receive(&outcomes))
	received := tr.t.received()
	r := report{name: name, requests: int64(len(tr.reqs)), attempts: tr.sender.Attempts.Load(),
		c2xx: tr.sender.OK.Load(), c5xx: tr.sender.C503.Load(), c429: tr.sender.C429.Load(), nets: tr.sender.NetErrs.Load()}
	var missing []string
	for i, o := range outcomes {
		r.events += int64(len(tr.reqs[i].IDs))
		Expect(o.Acked).To(BeTrue(), "request %d was never acknowledged: %s after %d attempts", i, o.LastErr, o.Attempts)
		for _, id := range tr.reqs[i].IDs {
			switch n := received[id]; {
			case n == 0:
				missing = append(missing, id)
			case n > 1:
				r.duplicates++
			}
		}
	}
	r.lost = len(missing)
	reports = append(reports, r)
	fmt.Fprintln(GinkgoWriter, "[e2e] "+r.String())
	Expect(missing).To(BeEmpty(), "acknowledged events missing at the sink")
	return r
}

func condition(swh *segmentv1alpha1.SegmentWebhook, typ string) *metav1.Condition {
	return meta.FindStatusCondition(swh.Status.Conditions, typ)
}
