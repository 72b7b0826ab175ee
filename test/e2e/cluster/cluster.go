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

// Package cluster runs a real one-node Kubernetes cluster on this machine from binaries: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, containerd with runc and the CNI
// bridge, the kubelet and kube-proxy. Everything lives in one directory and is removed by
// Teardown: processes, mounts, network links, iptables chains, cgroups and sysctls.
//
// Addresses: the node has its own address, NodeIP, on a link the cluster creates (a bridge
// without ports: this kernel has no dummy links); the API server, the kubelet and NodePorts bind
// to it, etcd and the components' health ports to loopback, and pods live on the CNI bridge. Nothing binds to or is sent to the machine's own
// interface addresses.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// The cluster's fixed names and ranges. They are private ranges no interface of this machine
// kind uses; Preflight refuses to start when one of them is already routed.
const (
	NodeName    = "swo-node"
	NodeIP      = "10.245.0.1"
	PodCIDR     = "10.244.0.0/24"
	ServiceCIDR = "10.96.0.0/16"
	// APIServer is the API server's URL, on the node address.
	APIServer = "https://" + NodeIP + ":6443"

	nodeLink   = "swo-node0"
	bridgeLink = "swo-cni0"
)

// Options say where the cluster lives and what it runs.
type Options struct {
	// Dir holds everything the cluster writes; Teardown removes it.
	Dir string
	// EnvtestAssets holds kube-apiserver and etcd (hack/envtest-assets.sh), NodeAssets the
	// kubelet, kube-controller-manager, kube-scheduler, kube-proxy and kubectl
	// (hack/node-assets.sh).
	EnvtestAssets, NodeAssets string
	// PauseImage is the sandbox image; it must be among Images.
	PauseImage string
	// Images are OCI or docker archives imported into containerd before the kubelet starts.
	Images []string
	// Detach lets the processes outlive the caller (make cluster): each gets its own session.
	Detach bool
	// Progress receives one line per step.
	Progress io.Writer
}

// Cluster is a running cluster.
type Cluster struct {
	opts Options
	st   *state
	// Kubeconfig is the admin kubeconfig (system:masters).
	Kubeconfig string
	// Client is an admin client.
	Client kubernetes.Interface
	// RESTConfig is the admin client's config.
	RESTConfig *rest.Config

	specs map[string]procSpec
}

type procSpec struct {
	path string
	args []string
}

// Up starts a cluster and waits until its node is Ready. On failure it removes what it made.
func Up(ctx context.Context, opts Options) (c *Cluster, err error) {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if err := Preflight(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(opts.Dir, stateFile)); err == nil {
		fmt.Fprintf(opts.Progress, "[cluster] removing the leftovers of an earlier cluster in %s\n", opts.Dir)
		if err := Teardown(opts.Dir, opts.Progress); err != nil {
			return nil, fmt.Errorf("removing the earlier cluster: %w", err)
		}
	}
	if linkExists(nodeLink) {
		return nil, fmt.Errorf("the link %s exists: another cluster runs here (make cluster-down removes it)", nodeLink)
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	c = &Cluster{opts: opts, st: &state{Dir: opts.Dir}, specs: map[string]procSpec{}}
	defer func() {
		if err != nil {
			fmt.Fprintf(opts.Progress, "[cluster] failed: %v; the logs are in %s (kept until the next run)\n", err, filepath.Join(opts.Dir, "logs"))
			_ = c.saveLogs()
			_ = Teardown(opts.Dir, opts.Progress)
		}
	}()
	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"certificates and kubeconfigs", c.writePKI},
		{"node address " + NodeIP + " on " + nodeLink + ", sysctls", c.network},
		{"etcd", c.startEtcd},
		{"kube-apiserver on " + APIServer, c.startAPIServer},
		{"containerd and runc", c.startContainerd},
		{"image import", c.importImages},
		{"kube-controller-manager, kube-scheduler, kube-proxy, kubelet", c.startNode},
		{"node " + NodeName + " Ready", c.waitNodeReady},
	}
	start := time.Now()
	for i, s := range steps {
		t := time.Now()
		fmt.Fprintf(opts.Progress, "[cluster] %d/%d %s ...\n", i+1, len(steps), s.name)
		if err := s.run(ctx); err != nil {
			return c, fmt.Errorf("%s: %w", s.name, err)
		}
		fmt.Fprintf(opts.Progress, "[cluster] %d/%d %s: done in %.1fs\n", i+1, len(steps), s.name, time.Since(t).Seconds())
	}
	fmt.Fprintf(opts.Progress, "[cluster] up in %.1fs; export KUBECONFIG=%s\n", time.Since(start).Seconds(), c.Kubeconfig)
	return c, nil
}

// Down removes the cluster.
func (c *Cluster) Down() error {
	_ = c.saveLogs()
	return Teardown(c.opts.Dir, c.opts.Progress)
}

// LogDir is where each process's log is written.
func (c *Cluster) LogDir() string { return filepath.Join(c.opts.Dir, "logs") }

// saveLogs copies the logs next to Dir (Dir+"-logs"), so they survive Teardown.
func (c *Cluster) saveLogs() error {
	dst := strings.TrimSuffix(c.opts.Dir, "/") + "-logs"
	_ = os.RemoveAll(dst)
	return exec.Command("cp", "-r", c.LogDir(), dst).Run()
}

// Preflight says what this machine lacks to run a cluster, or nil.
func Preflight() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (containerd, the kubelet and the CNI plugins need it)")
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory"); err != nil {
		if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
			missing = append(missing, "cgroups (no /sys/fs/cgroup/memory nor cgroup v2)")
		}
	}
	for _, tool := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip6tables", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" (apt-get install containerd runc iptables iproute2)")
		}
	}
	for _, plugin := range []string{"bridge", "host-local", "loopback", "portmap"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, plugin)); err != nil {
			missing = append(missing, "the CNI plugin "+plugin+" in "+cniBinDir+" (apt-get install containernetworking-plugins)")
		}
	}
	for _, cidr := range []string{NodeIP + "/32", PodCIDR, ServiceCIDR} {
		if used := routedBy(cidr); used != "" {
			missing = append(missing, fmt.Sprintf("the range %s free (this machine routes it: %s)", cidr, used))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("cannot run a cluster here: missing %s", strings.Join(missing, "; "))
	}
	return nil
}

const cniBinDir = "/usr/lib/cni"

// routedBy returns the route of this machine that covers cidr's first address through an
// interface other than the cluster's own, or "".
func routedBy(cidr string) string {
	ip, _, _ := net.ParseCIDR(cidr)
	out, err := exec.Command("ip", "-4", "route", "get", ip.String()).Output()
	if err != nil {
		return ""
	}
	route := strings.TrimSpace(string(out))
	if strings.Contains(route, " dev "+nodeLink) || strings.Contains(route, " dev "+bridgeLink) || strings.HasPrefix(route, "local ") {
		return ""
	}
	// Only the default route covers it: the range is free.
	if !strings.Contains(route, " via ") {
		return route
	}
	def, _ := exec.Command("ip", "-4", "route", "show", "default").Output()
	gw := strings.Fields(route)
	for i := range gw {
		if gw[i] == "via" && i+1 < len(gw) && strings.Contains(string(def), "via "+gw[i+1]) {
			return ""
		}
	}
	return route
}

func linkExists(name string) bool { return exec.Command("ip", "link", "show", name).Run() == nil }

// --- steps ---------------------------------------------------------------------------------------

func (c *Cluster) path(parts ...string) string {
	return filepath.Join(append([]string{c.opts.Dir}, parts...)...)
}

func (c *Cluster) writePKI(context.Context) error {
	p, err := newPKI(c.path("pki"))
	if err != nil {
		return err
	}
	nodeIP := net.ParseIP(NodeIP)
	serviceIP := net.ParseIP("10.96.0.1")
	certs := []struct {
		name, cn string
		groups   []string
		ips      []net.IP
		dns      []string
	}{
		{"apiserver", "kube-apiserver", nil, []net.IP{nodeIP, serviceIP, net.ParseIP("127.0.0.1")},
			[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, nil, nil},
		{"admin", "e2e-admin", []string{"system:masters"}, nil, nil},
		{"controller-manager", "system:kube-controller-manager", nil, nil, nil},
		{"scheduler", "system:kube-scheduler", nil, nil, nil},
		{"proxy", "system:kube-proxy", nil, nil, nil},
		{"kubelet", "system:node:" + NodeName, []string{"system:nodes"}, []net.IP{nodeIP}, []string{NodeName}},
	}
	for _, ct := range certs {
		if err := p.issue(ct.name, ct.cn, ct.groups, ct.ips, ct.dns); err != nil {
			return err
		}
	}
	for _, name := range []string{"admin", "controller-manager", "scheduler", "proxy", "kubelet"} {
		if _, err := p.kubeconfig(name, APIServer); err != nil {
			return err
		}
	}
	c.Kubeconfig = p.path("admin.kubeconfig")
	return p.serviceAccountKey()
}

// network makes the node address and sets the sysctls a node needs, recording the old values.
func (c *Cluster) network(context.Context) error {
	c.st.Links = append(c.st.Links, nodeLink)
	if err := c.st.save(); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"link", "add", nodeLink, "type", "bridge"},
		{"addr", "add", NodeIP + "/32", "dev", nodeLink},
		{"link", "set", nodeLink, "up"},
		// The host reaches Services from the node address, never from its own interfaces.
		{"route", "add", ServiceCIDR, "dev", nodeLink, "src", NodeIP},
	} {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	// The kubelet and the bridge plugin set some of these themselves: all are restored.
	sysctls := map[string]string{
		"net/ipv4/ip_forward":                 "1",
		"net/bridge/bridge-nf-call-iptables":  "1",
		"net/bridge/bridge-nf-call-ip6tables": "1",
		"vm/overcommit_memory":                "",
		"kernel/panic":                        "",
		"kernel/panic_on_oops":                "",
		"net/ipv4/conf/all/route_localnet":    "",
	}
	c.st.Sysctls = map[string]string{}
	for key, value := range sysctls {
		old, err := os.ReadFile(filepath.Join("/proc/sys", key))
		if err != nil {
			if value == "" {
				continue
			}
			return fmt.Errorf("sysctl %s: %w", key, err)
		}
		c.st.Sysctls[key] = strings.TrimSpace(string(old))
		if value != "" {
			if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644); err != nil {
				return fmt.Errorf("sysctl %s: %w", key, err)
			}
		}
	}
	// Fixed paths the node writes outside Dir: removed on teardown when they did not exist.
	for _, p := range fixedPaths {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			c.st.Created = append(c.st.Created, p)
		}
	}
	return c.st.save()
}

var fixedPaths = []string{"/run/containerd", "/var/lib/cni", "/var/lib/kubelet", "/var/log/containers", "/var/log/pods"}

func (c *Cluster) startEtcd(ctx context.Context) error {
	client, peer := freePort(), freePort()
	c.st.EtcdURL = "http://127.0.0.1:" + client
	err := c.start("etcd", filepath.Join(c.opts.EnvtestAssets, "etcd"),
		"--name=e2e", "--data-dir="+c.path("etcd"),
		"--listen-client-urls="+c.st.EtcdURL, "--advertise-client-urls="+c.st.EtcdURL,
		"--listen-peer-urls=http://127.0.0.1:"+peer, "--initial-advertise-peer-urls=http://127.0.0.1:"+peer,
		"--initial-cluster=e2e=http://127.0.0.1:"+peer, "--unsafe-no-fsync=true")
	if err != nil {
		return err
	}
	return c.waitEtcd(ctx)
}

func (c *Cluster) startAPIServer(ctx context.Context) error {
	pki := c.path("pki")
	err := c.start("kube-apiserver", filepath.Join(c.opts.EnvtestAssets, "kube-apiserver"),
		"--etcd-servers="+c.st.EtcdURL,
		"--bind-address="+NodeIP, "--advertise-address="+NodeIP, "--secure-port=6443",
		"--tls-cert-file="+pki+"/apiserver.crt", "--tls-private-key-file="+pki+"/apiserver.key",
		"--client-ca-file="+pki+"/ca.crt",
		"--kubelet-client-certificate="+pki+"/apiserver-kubelet-client.crt",
		"--kubelet-client-key="+pki+"/apiserver-kubelet-client.key",
		"--kubelet-certificate-authority="+pki+"/ca.crt",
		"--kubelet-preferred-address-types=InternalIP",
		"--service-account-key-file="+pki+"/sa.pub", "--service-account-signing-key-file="+pki+"/sa.key",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range="+ServiceCIDR,
		"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=false")
	if err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 50, 100
	c.RESTConfig = cfg
	if c.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	return c.waitReadyz(ctx)
}

func (c *Cluster) waitReadyz(ctx context.Context) error {
	return c.poll(ctx, "kube-apiserver", 60*time.Second, func() error {
		body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%w: %s", err, body)
		}
		return nil
	})
}

func (c *Cluster) containerdSocket() string { return c.path("containerd.sock") }

func (c *Cluster) startContainerd(ctx context.Context) error {
	config := fmt.Sprintf(containerdConfig, c.path("containerd", "root"), c.path("containerd", "state"),
		c.containerdSocket(), c.opts.PauseImage, cniBinDir, c.path("cni", "net.d"))
	if err := writeFile(c.path("containerd.toml"), config); err != nil {
		return err
	}
	cni := fmt.Sprintf(cniConfig, bridgeLink, PodCIDR, c.path("cni", "ipam"))
	if err := writeFile(c.path("cni", "net.d", "10-swo.conflist"), cni); err != nil {
		return err
	}
	c.st.Links = append(c.st.Links, bridgeLink)
	if err := c.start("containerd", "containerd", "--config="+c.path("containerd.toml")); err != nil {
		return err
	}
	return c.poll(ctx, "containerd", 30*time.Second, func() error {
		return exec.CommandContext(ctx, "ctr", "--address", c.containerdSocket(), "version").Run()
	})
}

const containerdConfig = `version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # This VM withholds CAP_SYS_RESOURCE: oom_score_adj may not be lowered (see REAL-NODE.md).
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`

// cniConfig is a bridge without masquerading: pods reach each other, the node and Services, and
// nothing beyond this machine.
const cniConfig = `{
  "cniVersion": "1.0.0",
  "name": "swo",
  "plugins": [
    {
      "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %q}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`

func (c *Cluster) importImages(ctx context.Context) error {
	for _, archive := range c.opts.Images {
		out, err := exec.CommandContext(ctx, "ctr", "--address", c.containerdSocket(), "-n", "k8s.io",
			"images", "import", archive).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ctr images import %s: %w: %s", archive, err, out)
		}
		fmt.Fprintf(c.opts.Progress, "[cluster]     imported %s: %s", filepath.Base(archive), out)
	}
	return nil
}

func (c *Cluster) startNode(ctx context.Context) error {
	pki := c.path("pki")
	bin := func(name string) string { return filepath.Join(c.opts.NodeAssets, name) }
	kcmPort, schedPort, kubeletHealth, proxyHealth, proxyMetrics := freePort(), freePort(), freePort(), freePort(), freePort()
	if err := c.start("kube-controller-manager", bin("kube-controller-manager"),
		"--kubeconfig="+pki+"/controller-manager.kubeconfig",
		"--authentication-kubeconfig="+pki+"/controller-manager.kubeconfig",
		"--authorization-kubeconfig="+pki+"/controller-manager.kubeconfig",
		"--bind-address=127.0.0.1", "--secure-port="+kcmPort, "--leader-elect=false",
		"--service-account-private-key-file="+pki+"/sa.key", "--root-ca-file="+pki+"/ca.crt",
		"--cluster-signing-cert-file="+pki+"/ca.crt", "--cluster-signing-key-file="+pki+"/ca.key",
		"--use-service-account-credentials=true", "--service-cluster-ip-range="+ServiceCIDR,
		"--cluster-cidr="+PodCIDR, "--allocate-node-cidrs=false"); err != nil {
		return err
	}
	if err := c.start("kube-scheduler", bin("kube-scheduler"),
		"--kubeconfig="+pki+"/scheduler.kubeconfig",
		"--authentication-kubeconfig="+pki+"/scheduler.kubeconfig",
		"--authorization-kubeconfig="+pki+"/scheduler.kubeconfig",
		"--bind-address=127.0.0.1", "--secure-port="+schedPort, "--leader-elect=false"); err != nil {
		return err
	}
	if err := c.start("kube-proxy", bin("kube-proxy"),
		"--kubeconfig="+pki+"/proxy.kubeconfig", "--hostname-override="+NodeName,
		"--proxy-mode=iptables", "--cluster-cidr="+PodCIDR,
		"--nodeport-addresses="+NodeIP+"/32",
		"--healthz-bind-address=127.0.0.1:"+proxyHealth, "--metrics-bind-address=127.0.0.1:"+proxyMetrics,
		// 0 leaves the conntrack sysctls as they are: this VM may not change them.
		"--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0s", "--conntrack-tcp-timeout-close-wait=0s"); err != nil {
		return err
	}
	kubeletConfig := fmt.Sprintf(kubeletConfigTemplate, NodeIP, kubeletHealth, pki+"/ca.crt",
		"unix://"+c.containerdSocket(), "unix://"+c.containerdSocket(), c.path("pod-logs"),
		pki+"/kubelet.crt", pki+"/kubelet.key")
	if err := writeFile(c.path("kubelet.yaml"), kubeletConfig); err != nil {
		return err
	}
	return c.start("kubelet", bin("kubelet"),
		"--config="+c.path("kubelet.yaml"), "--kubeconfig="+pki+"/kubelet.kubeconfig",
		"--root-dir="+c.path("kubelet"), "--node-ip="+NodeIP, "--hostname-override="+NodeName)
}

// The kubelet's settings for this machine kind (REAL-NODE.md): cgroup v1 with cgroupfs, containerd
// 1.6 without RuntimeConfig, no swap check, no node allocatable enforcement, oom_score_adj left
// at 0, imported images never collected; and a short sync period, so mounted Secrets follow an
// update within seconds.
const kubeletConfigTemplate = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %q
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %s
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: %q
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
enforceNodeAllocatable: []
containerRuntimeEndpoint: %q
imageServiceEndpoint: %q
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  imagefs.available: 1%%
oomScoreAdj: 0
syncFrequency: 5s
podLogsDir: %q
tlsCertFile: %q
tlsPrivateKeyFile: %q
clusterDomain: cluster.local
serializeImagePulls: false
`

func (c *Cluster) waitNodeReady(ctx context.Context) error {
	err := c.poll(ctx, "node "+NodeName, 120*time.Second, func() error {
		node, err := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("condition Ready=%s: %s", cond.Status, cond.Message)
			}
		}
		return errors.New("no Ready condition yet")
	})
	if err != nil {
		return err
	}
	// Pods can be created once the default ServiceAccount exists.
	return c.poll(ctx, "the default ServiceAccount", 60*time.Second, func() error {
		_, err := c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// StopControlPlane stops the control plane as the outage of its node would: etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler. The kubelet, kube-proxy and the
// pods keep running. StartControlPlane starts them again with the same data.
func (c *Cluster) StopControlPlane() error {
	for _, name := range controlPlane {
		if err := c.stop(name); err != nil {
			return err
		}
	}
	return nil
}

// controlPlane is in the order of stopping; it starts in the reverse order.
var controlPlane = []string{"kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"}

// StartControlPlane restarts what StopControlPlane stopped and waits until the API server is ready.
func (c *Cluster) StartControlPlane(ctx context.Context) error {
	for i := len(controlPlane) - 1; i >= 0; i-- {
		name := controlPlane[i]
		spec := c.specs[name]
		if err := c.start(name, spec.path, spec.args...); err != nil {
			return err
		}
		switch name {
		case "etcd":
			if err := c.waitEtcd(ctx); err != nil {
				return err
			}
		case "kube-apiserver":
			if err := c.waitReadyz(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// Kubectl runs the node's kubectl with the admin kubeconfig.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.opts.NodeAssets, "kubectl"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// --- processes -----------------------------------------------------------------------------------

// start runs a component in the background, its output in logs/<name>.log, and records it.
func (c *Cluster) start(name, path string, args ...string) error {
	logFile, err := os.OpenFile(filepath.Join(c.LogDir(), name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Dir = c.opts.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: !c.opts.Detach, Setsid: c.opts.Detach}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	// Reap it when it exits, so a stopped component leaves no zombie behind.
	go func() { _ = cmd.Wait() }()
	c.specs[name] = procSpec{path: path, args: args}
	c.st.Procs = append(c.st.Procs, proc{Name: name, Pid: cmd.Process.Pid})
	return c.st.save()
}

// stop ends one component: SIGTERM, then SIGKILL after 10 s.
func (c *Cluster) stop(name string) error {
	kept := c.st.Procs[:0]
	for _, p := range c.st.Procs {
		if p.Name == name {
			terminate(p.Pid, 10*time.Second)
			continue
		}
		kept = append(kept, p)
	}
	c.st.Procs = kept
	return c.st.save()
}

func (c *Cluster) poll(ctx context.Context, what string, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		if exited := c.exited(); exited != "" {
			return fmt.Errorf("%s exited: see %s", exited, filepath.Join(c.LogDir(), exited+".log"))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w", what, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// exited names a recorded component that is no longer running.
func (c *Cluster) exited() string {
	for _, p := range c.st.Procs {
		if !alive(p.Pid) {
			return p.Name
		}
	}
	return ""
}

func (c *Cluster) waitEtcd(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	return c.poll(ctx, "etcd", 30*time.Second, func() error {
		resp, err := client.Get(c.st.EtcdURL + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("etcd /health: %s", resp.Status)
		}
		return nil
	})
}

// --- helpers -------------------------------------------------------------------------------------

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644)
}

// freePort returns a loopback TCP port nothing listens on now.
func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// state is what Teardown needs to undo a cluster, kept in Dir/state.json as it is made.
type state struct {
	Dir     string            `json:"dir"`
	Procs   []proc            `json:"procs"`
	Links   []string          `json:"links"`
	Sysctls map[string]string `json:"sysctls"`
	Created []string          `json:"created"`
	EtcdURL string            `json:"etcdURL"`
}

type proc struct {
	Name string `json:"name"`
	Pid  int    `json:"pid"`
}

const stateFile = "state.json"

func (s *state) save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.Dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.Dir, stateFile))
}

// ContainerPID returns the host PID of a container's main process, from its CRI id
// ("containerd://<id>" as a pod's status gives it).
func (c *Cluster) ContainerPID(ctx context.Context, containerID string) (int, error) {
	id := strings.TrimPrefix(containerID, "containerd://")
	out, err := exec.CommandContext(ctx, "ctr", "--address", c.containerdSocket(), "-n", "k8s.io", "tasks", "ls").Output()
	if err != nil {
		return 0, fmt.Errorf("ctr tasks ls: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == id {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("no task %s", id)
}

// TagImage gives an imported image another name, as a registry would serve a new tag.
func (c *Cluster) TagImage(src, dst string) error {
	return run("ctr", "--address", c.containerdSocket(), "-n", "k8s.io", "images", "tag", "--force", src, dst)
}

// CheckAddresses fails when a process of the cluster listens anywhere but on loopback or the
// node address, such as on a wildcard or the machine's own interface address.
func (c *Cluster) CheckAddresses() error {
	out, err := exec.Command("ss", "-Hltnp").Output()
	if err != nil {
		return fmt.Errorf("ss -Hltnp: %w", err)
	}
	ours := map[string]string{}
	for _, p := range c.st.Procs {
		ours[fmt.Sprintf("pid=%d,", p.Pid)] = p.Name
	}
	var wrong []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		for pid, name := range ours {
			if !strings.Contains(f[5], pid) {
				continue
			}
			host, _, err := net.SplitHostPort(f[3])
			if err != nil || !(net.ParseIP(host).IsLoopback() || host == NodeIP) {
				wrong = append(wrong, name+" on "+f[3])
			}
		}
	}
	if len(wrong) > 0 {
		return fmt.Errorf("listening beyond loopback and %s: %s", NodeIP, strings.Join(wrong, ", "))
	}
	return nil
}
