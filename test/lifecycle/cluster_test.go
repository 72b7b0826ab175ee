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

// Package lifecycle installs, upgrades and removes the operator the ways users do (helm, and
// kubectl apply --server-side -k config/default) against a real kube-apiserver (envtest), and
// checks every object at each step. Each test gets a fresh control plane with nothing installed.
//
// envtest runs no controllers: Deployments get no pods, and a deleted Namespace stays
// Terminating (the namespace controller lives in kube-controller-manager). The CRD finalizer runs
// in the API server, so CRD deletion and the deletion of its custom resources are real.
package lifecycle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

const crdName = "segmentwebhooks.segment.webhook-operator.io"

var repoRoot = func() string {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	return root
}()

func TestMain(m *testing.M) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS must name the envtest binaries: run 'make test', "+
			"or KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh) go test ./test/lifecycle")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// cluster is a fresh envtest control plane with nothing installed.
type cluster struct {
	client     client.Client
	kubeconfig string
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	// Helm, kustomize and kubectl read these files, not the test: reading them here (during a test,
	// where go test logs it) makes the test cache run the tests again when they change.
	for _, dir := range []string{"charts", "config"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				_, err = os.ReadFile(path)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping envtest: %v", err)
		}
	})
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))
	utilruntime.Must(segmentv1alpha1.AddToScheme(scheme))
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	user, err := env.AddUser(envtest.User{Name: "lifecycle-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return &cluster{client: cl, kubeconfig: kc}
}

// tool finds helm or kustomize: the env var the Makefile sets (HELM, KUSTOMIZE), else bin/.
func tool(t *testing.T, name string) string {
	t.Helper()
	path := os.Getenv(strings.ToUpper(name))
	if path == "" {
		path = filepath.Join(repoRoot, "bin", name)
	}
	if info, err := os.Stat(path); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
		t.Fatalf("%s not found at %s (set %s or run 'make %s'; 'make test' installs it)",
			name, path, strings.ToUpper(name), name)
	}
	return path
}

// run runs a command in the repository root, logs it, and returns its stdout.
func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = repoRoot
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("$ %s %s", filepath.Base(name), strings.Join(args, " "))
	if err != nil {
		t.Fatalf("%s: %v\n%s%s", filepath.Base(name), err, stderr.String(), stdout.String())
	}
	return stdout.Bytes()
}

// decode splits a multi-document YAML stream into objects.
func decode(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("decoding YAML: %v", err)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
	return objs
}

// ref names one object.
type ref struct {
	gvk       schema.GroupVersionKind
	namespace string
	name      string
}

func (r ref) String() string {
	if r.namespace == "" {
		return r.gvk.Kind + " " + r.name
	}
	return r.gvk.Kind + " " + r.namespace + "/" + r.name
}

// refs names the objects of a manifest; namespaced objects without a namespace get defaultNS,
// as helm and kubectl do.
func (c *cluster) refs(t *testing.T, objs []*unstructured.Unstructured, defaultNS string) []ref {
	t.Helper()
	var out []ref
	for _, o := range objs {
		r := ref{gvk: o.GroupVersionKind(), namespace: o.GetNamespace(), name: o.GetName()}
		namespaced, err := c.client.IsObjectNamespaced(o)
		if err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		if namespaced && r.namespace == "" {
			r.namespace = defaultNS
		}
		if !namespaced {
			r.namespace = ""
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b ref) int { return strings.Compare(a.String(), b.String()) })
	return out
}

func (c *cluster) get(r ref) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(r.gvk)
	err := c.client.Get(context.Background(), client.ObjectKey{Namespace: r.namespace, Name: r.name}, u)
	return u, err
}

// requireExist fails for every object that is not on the server and returns their
// resourceVersions.
func (c *cluster) requireExist(t *testing.T, refs []ref) map[string]string {
	t.Helper()
	versions := map[string]string{}
	for _, r := range refs {
		u, err := c.get(r)
		if err != nil {
			t.Errorf("%s: %v", r, err)
			continue
		}
		versions[r.String()] = u.GetResourceVersion()
	}
	return versions
}

// requireGone waits until none of the objects exist (deletion may be asynchronous, such as a CRD
// whose custom resources are being removed).
func (c *cluster) requireGone(t *testing.T, refs []ref) {
	t.Helper()
	for _, r := range refs {
		err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true,
			func(context.Context) (bool, error) {
				_, err := c.get(r)
				if apierrors.IsNotFound(err) {
					return true, nil
				}
				return false, client.IgnoreNotFound(err)
			})
		if err != nil {
			t.Errorf("%s still exists: %v", r, err)
		}
	}
}

// managerRBAC are the RBAC objects that grant the manager its rules: the (Cluster)Roles whose
// rules let it write Deployments, and the bindings to them.
type managerRBAC struct {
	clusterRoles, clusterRoleBindings []string
	roles, roleBindings               []string // namespace/name
}

func (c *cluster) managerRBAC(t *testing.T) managerRBAC {
	t.Helper()
	ctx := context.Background()
	writesDeployments := func(rules []rbacv1.PolicyRule) bool {
		for _, r := range rules {
			if slices.Contains(r.APIGroups, "apps") && slices.Contains(r.Resources, "deployments") && slices.Contains(r.Verbs, "create") {
				return true
			}
		}
		return false
	}
	var out managerRBAC
	var crs rbacv1.ClusterRoleList
	var crbs rbacv1.ClusterRoleBindingList
	var roles rbacv1.RoleList
	var rbs rbacv1.RoleBindingList
	for _, l := range []client.ObjectList{&crs, &crbs, &roles, &rbs} {
		if err := c.client.List(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	managerCR := map[string]bool{}
	for _, cr := range crs.Items {
		if strings.HasPrefix(cr.Name, "system:") || cr.Name == "cluster-admin" || cr.AggregationRule != nil {
			continue
		}
		if writesDeployments(cr.Rules) {
			managerCR[cr.Name] = true
			out.clusterRoles = append(out.clusterRoles, cr.Name)
		}
	}
	for _, b := range crbs.Items {
		if b.RoleRef.Kind == "ClusterRole" && managerCR[b.RoleRef.Name] {
			out.clusterRoleBindings = append(out.clusterRoleBindings, b.Name)
		}
	}
	managerRole := map[string]bool{}
	for _, r := range roles.Items {
		if writesDeployments(r.Rules) {
			managerRole[r.Namespace+"/"+r.Name] = true
			out.roles = append(out.roles, r.Namespace+"/"+r.Name)
		}
	}
	for _, b := range rbs.Items {
		if (b.RoleRef.Kind == "Role" && managerRole[b.Namespace+"/"+b.RoleRef.Name]) ||
			(b.RoleRef.Kind == "ClusterRole" && managerCR[b.RoleRef.Name]) {
			out.roleBindings = append(out.roleBindings, b.Namespace+"/"+b.Name)
		}
	}
	return out
}

func (c *cluster) createNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := c.client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
}

// createUserWebhook stands for a team's own objects: a Secret and a SegmentWebhook.
func (c *cluster) createUserWebhook(t *testing.T, ns string) []client.Object {
	t.Helper()
	ctx := context.Background()
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "segment", Namespace: ns},
		StringData: map[string]string{"shared-secret": "change-me"},
	}
	swh := &segmentv1alpha1.SegmentWebhook{
		ObjectMeta: metav1.ObjectMeta{Name: "events", Namespace: ns},
		Spec: segmentv1alpha1.SegmentWebhookSpec{
			SecretRefs: []segmentv1alpha1.SecretKeyRef{{Name: "segment", Key: "shared-secret"}},
			Targets: []segmentv1alpha1.Target{{
				Name: "warehouse", HTTP: &segmentv1alpha1.HTTPTarget{URL: "https://collector.example.com/segment"},
			}},
		},
	}
	for _, o := range []client.Object{secret, swh} {
		if err := c.client.Create(ctx, o); err != nil {
			t.Fatalf("creating %T: %v", o, err)
		}
	}
	return []client.Object{secret, swh}
}

func (c *cluster) exists(t *testing.T, o client.Object) bool {
	t.Helper()
	err := c.client.Get(context.Background(), client.ObjectKeyFromObject(o), o.DeepCopyObject().(client.Object))
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) { // gone, or its kind is gone
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return err == nil
}

func (c *cluster) crdEstablished(t *testing.T) bool {
	t.Helper()
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := c.client.Get(context.Background(), client.ObjectKey{Name: crdName}, crd); err != nil {
		return false
	}
	for _, cond := range crd.Status.Conditions {
		if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}

// waitEstablished waits for the CRD to serve its kind (it takes the API server a moment).
func (c *cluster) waitEstablished(t *testing.T) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true,
		func(context.Context) (bool, error) { return c.crdEstablished(t), nil })
	if err != nil {
		t.Fatalf("CRD %s not established: %v", crdName, err)
	}
}

func diff(before, after []ref) (gone []ref) {
	have := map[string]bool{}
	for _, r := range after {
		have[r.String()] = true
	}
	for _, r := range before {
		if !have[r.String()] {
			gone = append(gone, r)
		}
	}
	return gone
}
