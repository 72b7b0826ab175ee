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
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/internal/segmentsim"
	"github.com/segment-webhook-operator/segment-webhook-operator/test/e2e/cluster"
)

// The scenarios share one cluster and one team, in order, as a platform team's day would go.
var _ = Describe("a SegmentWebhook on a real node", Ordered, func() {
	var t *team

	BeforeAll(func() {
		t = newTeam("team-a", 2)
	})

	AfterAll(func() {
		fmt.Println("\n[e2e] traffic (a Segment-like sender retrying on timeouts, 5xx, 408, 423, 429)")
		for _, r := range reports {
			fmt.Println("  " + r.String())
		}
	})

	It("becomes Ready from a real rollout, admitted under the restricted Pod Security Standard, and delivers through its Service", func() {
		start := time.Now()
		t.waitReady(3 * time.Minute)
		step("SegmentWebhook Ready (kubectl wait)", start)

		u := &unstructured.Unstructured{}
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(t.swh())
		Expect(err).NotTo(HaveOccurred())
		u.SetUnstructuredContent(obj)
		res, err := status.Compute(u)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Status).To(Equal(status.CurrentStatus), "kstatus: %s", res.Message)

		By("addresses pinned to the node address and loopback")
		Expect(node.CheckAddresses()).To(Succeed())
		n := &corev1.Node{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: cluster.NodeName}, n)).To(Succeed())
		Expect(n.Status.Addresses).To(ContainElement(corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: cluster.NodeIP}))
		Expect(n.Status.Addresses).To(HaveLen(2), "InternalIP and Hostname only")
		apiServer := &discoveryv1.EndpointSliceList{}
		Expect(k8s.List(ctx, apiServer, client.InNamespace("default"), client.MatchingLabels{discoveryv1.LabelServiceName: "kubernetes"})).To(Succeed())
		Expect(apiServer.Items).To(HaveLen(1))
		Expect(apiServer.Items[0].Endpoints).To(HaveLen(1))
		Expect(apiServer.Items[0].Endpoints[0].Addresses).To(Equal([]string{cluster.NodeIP}))

		pods := t.receiverPods()
		Expect(pods).To(HaveLen(2))
		for _, p := range pods {
			Expect(p.Status.Phase).To(Equal(corev1.PodRunning))
			Expect(p.Spec.NodeName).To(Equal(cluster.NodeName))
		}

		By("the restricted namespace refusing what the standard forbids")
		// A container with no security context: it may run as root and escalate.
		bad := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "unhardened", Namespace: t.ns},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: sinkImage}}},
		}
		err = k8s.Create(ctx, bad)
		Expect(err).To(MatchError(ContainSubstring("violates PodSecurity \"restricted")))

		By("single events and a 4000-event Actions batch through status.address.url")
		url := t.url()
		// kube-proxy programs the Service's endpoints a moment after the pods turn Ready.
		first := []byte(segmentsim.Event("single-first", 0))
		Eventually(func() int { return post(url, first, segmentsim.Sign(t.secret, first)) }).
			WithTimeout(30 * time.Second).WithPolling(200 * time.Millisecond).Should(Equal(http.StatusOK))
		ids := []string{"single-first"}
		for i := range 20 {
			id := fmt.Sprintf("single-%02d", i)
			ids = append(ids, id)
			body := []byte(segmentsim.Event(id, i))
			Expect(post(url, body, segmentsim.Sign(t.secret, body))).To(Equal(http.StatusOK))
		}
		var events []string
		for i := range 4000 {
			id := fmt.Sprintf("batch-%04d", i)
			ids = append(ids, id)
			events = append(events, segmentsim.Event(id, i))
		}
		batch := []byte("[" + strings.Join(events, ",") + "]")
		Expect(post(url, batch, segmentsim.Sign(t.secret, []byte(events[0])))).To(Equal(http.StatusOK))
		received := t.received()
		for _, id := range ids {
			Expect(received).To(HaveKey(id))
		}
		Expect(post(url, []byte(segmentsim.Event("forged", 0)), segmentsim.Sign("guess", []byte("x")))).
			To(Equal(http.StatusUnauthorized))
		step("Ready, 20 single events and a 4000-event batch", start)
	})

	It("takes a rotated secret from the mounted volume without a restart", func() {
		start := time.Now()
		before := t.receiverPods()
		body := []byte(segmentsim.Event("rotated-1", 1))
		newSecret := "second-secret"
		// Each receiver pod is asked directly: each reads its own copy of the mounted Secret,
		// which the kubelet updates in its own sync of that pod.
		everyPod := func(secret string) []int {
			var codes []int
			for _, p := range before {
				codes = append(codes, post(fmt.Sprintf("http://%s:8080/webhook", p.Status.PodIP), body, segmentsim.Sign(secret, body)))
			}
			return codes
		}
		all := func(code int) []int { return []int{code, code} }

		By("the new secret beside the old one")
		setSecret(t, map[string]string{"current": newSecret, "previous": t.secret})
		changed := time.Now()
		Eventually(func() []int { return everyPod(newSecret) }).
			WithTimeout(90 * time.Second).WithPolling(250 * time.Millisecond).Should(Equal(all(http.StatusOK)))
		accepted := time.Since(changed)
		Expect(everyPod(t.secret)).To(Equal(all(http.StatusOK)), "the old secret is still accepted")

		By("the old secret removed")
		setSecret(t, map[string]string{"current": newSecret, "previous": newSecret})
		changed = time.Now()
		Eventually(func() []int { return everyPod(t.secret) }).
			WithTimeout(90 * time.Second).WithPolling(250 * time.Millisecond).Should(Equal(all(http.StatusUnauthorized)))
		refused := time.Since(changed)
		Expect(post(t.url(), body, segmentsim.Sign(newSecret, body))).To(Equal(http.StatusOK), "through the Service")
		t.secret = newSecret

		after := t.receiverPods()
		Expect(podNames(after)).To(ConsistOf(podNames(before)), "the same pods")
		for _, p := range after {
			Expect(p.Status.ContainerStatuses[0].RestartCount).To(BeZero())
		}
		rotation := fmt.Sprintf("secret rotation: new accepted after %.1fs, old refused after %.1fs", accepted.Seconds(), refused.Seconds())
		step(rotation, start)
	})

	It("loses nothing through a rolling update, a pod deletion and a SIGKILL", func() {
		start := time.Now()
		dep := t.deployment()
		grace := ptr.Deref(dep.Spec.Template.Spec.TerminationGracePeriodSeconds, 30)
		// A terminating receiver stays unready but serving for --drain-delay (5 s), then finishes
		// its requests within the delivery budget (3 s, below Segment's 5 s): the grace period
		// must hold both, or the kubelet kills requests in flight.
		Expect(grace).To(BeNumerically(">=", 5+5), "terminationGracePeriodSeconds")

		tr := t.startTraffic("roll", 1500, 45*time.Second)

		By("a spec change rolling out a new ReplicaSet")
		oldPods := podNames(t.receiverPods())
		t.update(func(swh *segmentv1alpha1.SegmentWebhook) {
			swh.Spec.Delivery.Budget = &metav1.Duration{Duration: 2900 * time.Millisecond}
		})
		Eventually(func() int64 { return t.deployment().Status.ObservedGeneration }).Should(BeNumerically(">", dep.Status.ObservedGeneration))
		t.waitRolledOut()
		Expect(podNames(t.receiverPods())).NotTo(ContainElements(oldPods))

		By("a receiver pod deleted: unready in its EndpointSlice while its container still runs")
		victim := t.receiverPods()[0]
		Expect(k8s.Delete(ctx, &victim)).To(Succeed())
		Eventually(func() bool { return endpointReady(t, victim.Status.PodIP) }).WithTimeout(10 * time.Second).
			WithPolling(100 * time.Millisecond).Should(BeFalse())
		running := &corev1.Pod{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(&victim), running)).To(Succeed(), "the pod still exists, draining")
		Expect(running.Status.ContainerStatuses[0].State.Running).NotTo(BeNil(), "the container still runs")
		t.waitRolledOut()

		By("a receiver killed with SIGKILL")
		victim = t.receiverPods()[0]
		pid, err := node.ContainerPID(ctx, victim.Status.ContainerStatuses[0].ContainerID)
		Expect(err).NotTo(HaveOccurred())
		Expect(syscall.Kill(pid, syscall.SIGKILL)).To(Succeed())
		Eventually(func() int32 {
			p := &corev1.Pod{}
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(&victim), p)).To(Succeed())
			return p.Status.ContainerStatuses[0].RestartCount
		}).WithTimeout(time.Minute).Should(BeNumerically(">=", 1))
		t.waitRolledOut()

		tr.wait("rollout, delete, SIGKILL")
		step("rolling update, pod deletion, SIGKILL under traffic", start)
	})

	It("keeps serving through a helm upgrade of the operator to a new image tag", func() {
		start := time.Now()
		before := podNames(t.receiverPods())
		tr := t.startTraffic("upgrade", 450, 15*time.Second)
		repo, _ := cluster.SplitImage(operator.Image)
		newImage := repo + ":e2e-upgrade"
		Expect(node.TagImage(operator.Image, newImage)).To(Succeed())
		args := append([]string{"upgrade", operator.Release, operator.Chart, "--namespace", operator.Namespace,
			"--reuse-values", "--wait", "--timeout", "3m"}, operator.HelmArgs(newImage)...)
		_, err := node.Helm(ctx, operator.Helm, args...)
		Expect(err).NotTo(HaveOccurred())
		Expect(node.WaitDeploymentAvailable(ctx, operator.Namespace, operator.Release+"-segment-webhook-operator", 2*time.Minute)).To(Succeed())
		r := tr.wait("helm upgrade of the operator")
		Expect(r.c5xx).To(BeZero(), "no 5xx while the operator is upgraded")
		Expect(podNames(t.receiverPods())).To(ConsistOf(before), "the receivers are not restarted")
		t.waitReady(time.Minute)
		step("helm upgrade of the operator under traffic", start)
	})

	It("respects the PodDisruptionBudget when the node is drained", func() {
		start := time.Now()
		tr := t.startTraffic("drain", 300, 15*time.Second)
		// The only node: one receiver may go (maxUnavailable 1); its replacement cannot be
		// scheduled on a cordoned node, so the PDB must block evicting the other.
		out, err := node.Kubectl(ctx, "drain", cluster.NodeName, "--pod-selector=segment.webhook-operator.io/name="+t.name,
			"--ignore-daemonsets", "--timeout=12s")
		Expect(err).To(HaveOccurred(), "the drain cannot finish: %s", out)
		Expect(string(out)).To(ContainSubstring("disruption budget"))
		Expect(t.receiverPods()).NotTo(BeEmpty(), "a receiver is left running")
		Expect(countReady(t.receiverPods())).To(BeNumerically(">=", 1))
		_, err = node.Kubectl(ctx, "uncordon", cluster.NodeName)
		Expect(err).NotTo(HaveOccurred())
		t.waitRolledOut()
		tr.wait("drain with a PodDisruptionBudget")
		step("kubectl drain blocked by the PDB, then uncordon", start)
	})

	It("keeps answering while the control plane (etcd, kube-apiserver, controller-manager, scheduler) is down for a minute, and the operator recovers without writes", func() {
		start := time.Now()
		versions := childVersions(t)
		tr := t.startTraffic("outage", 900, 70*time.Second)
		stopped := time.Now()
		Expect(node.StopControlPlane()).To(Succeed())
		time.Sleep(time.Minute) // the outage itself: nothing to await while the API server is down
		Expect(node.StartControlPlane(ctx)).To(Succeed())
		back := time.Now()
		r := tr.wait("control plane down for a minute")
		Expect(r.c5xx).To(BeZero())
		// The manager lost its leader lease in the outage and restarted: it is ready again once it
		// reconciles, after the outage (a Deployment's status from before it would say nothing).
		Eventually(func() bool { return managerReadySince(stopped) }).WithTimeout(3 * time.Minute).Should(BeTrue())
		recovered := time.Since(back)
		t.waitReady(time.Minute)
		Consistently(func() map[string]string { return childVersions(t) }).WithTimeout(15*time.Second).Should(Equal(versions),
			"the operator writes none of the children after the outage")
		step(fmt.Sprintf("control plane down for a minute under traffic (operator ready %.0fs after)", recovered.Seconds()), start)
	})

	It("turns Stalled through the real ProgressDeadlineExceeded when a receiver cannot start", func() {
		start := time.Now()
		// The rollout's deadline, shortened by hand (the operator leaves the field to others).
		_, err := node.Kubectl(ctx, "patch", "deployment", t.name+"-receiver", "-n", t.ns, "--type=merge",
			"-p", `{"spec":{"progressDeadlineSeconds":15}}`)
		Expect(err).NotTo(HaveOccurred())
		t.update(func(swh *segmentv1alpha1.SegmentWebhook) {
			swh.Spec.Image = "127.0.0.1:1/segment-webhook-operator-receiver:does-not-exist"
		})
		Eventually(func() string {
			c := condition(t.swh(), segmentv1alpha1.ConditionStalled)
			if c == nil || c.Status != metav1.ConditionTrue {
				return ""
			}
			return c.Reason
		}).WithTimeout(2 * time.Minute).Should(Equal(segmentv1alpha1.ReasonProgressDeadlineExceeded))
		Expect(condition(t.swh(), segmentv1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))
		// The old pods keep serving meanwhile (maxUnavailable 0).
		body := []byte(segmentsim.Event("stalled-1", 1))
		Expect(post(t.url(), body, segmentsim.Sign(t.secret, body))).To(Equal(http.StatusOK))

		t.update(func(swh *segmentv1alpha1.SegmentWebhook) { swh.Spec.Image = "" })
		t.waitReady(3 * time.Minute)
		step("Stalled by ProgressDeadlineExceeded, then recovered", start)
	})
})

func post(url string, body []byte, signature string) int {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Signature", signature)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		fmt.Fprintf(GinkgoWriter, "[e2e] POST %s: %v\n", url, err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func podNames(pods []corev1.Pod) []string {
	var names []string
	for _, p := range pods {
		names = append(names, p.Name)
	}
	return names
}

func countReady(pods []corev1.Pod) int {
	n := 0
	for _, p := range pods {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				n++
			}
		}
	}
	return n
}

// endpointReady says whether the receivers' EndpointSlices list ip as ready.
func endpointReady(t *team, ip string) bool {
	slices := &discoveryv1.EndpointSliceList{}
	Expect(k8s.List(ctx, slices, client.InNamespace(t.ns),
		client.MatchingLabels{discoveryv1.LabelServiceName: t.name + "-receiver"})).To(Succeed())
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			for _, a := range e.Addresses {
				if a == ip {
					return ptr.Deref(e.Conditions.Ready, false)
				}
			}
		}
	}
	return false
}

func setSecret(t *team, data map[string]string) {
	Eventually(func() error {
		s := &corev1.Secret{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: t.ns, Name: secretName}, s); err != nil {
			return err
		}
		s.Data = nil
		s.StringData = data
		return k8s.Update(ctx, s)
	}).Should(Succeed())
}

// childVersions are the resourceVersions of the SegmentWebhook and its children: equal versions
// mean nobody wrote them.
func childVersions(t *team) map[string]string {
	out := map[string]string{}
	objs := map[string]client.Object{
		"segmentwebhook": &segmentv1alpha1.SegmentWebhook{}, "configmap": &corev1.ConfigMap{},
		"service": &corev1.Service{},
	}
	for kind, obj := range objs {
		name := t.name + "-receiver"
		if kind == "segmentwebhook" {
			name = t.name
		}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: t.ns, Name: name}, obj)).To(Succeed())
		out[kind] = obj.GetResourceVersion()
	}
	d := t.deployment()
	out["deployment spec generation"] = fmt.Sprint(d.Generation)
	return out
}

// managerReadySince says whether an operator pod turned Ready after t.
func managerReadySince(t time.Time) bool {
	pods := &corev1.PodList{}
	Expect(k8s.List(ctx, pods, client.InNamespace(operator.Namespace))).To(Succeed())
	for _, p := range pods.Items {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && c.LastTransitionTime.After(t) {
				return true
			}
		}
	}
	return false
}
