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
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// Everything in this file is a pure function of the SegmentWebhook and the operator's settings,
// so children can be checked without an API server.

const (
	// ConfigHashAnnotation on the pod template rolls the pods when the receiver config changes.
	ConfigHashAnnotation = "segment.webhook-operator.io/config-hash"

	receiverContainer = "receiver"
	configVolume      = "config"
	configMountPath   = config.DefaultConfigDirectory
	secretsMountPath  = "/etc/segment-webhook/secrets"
	httpPortName      = "http"
	metricsPortName   = "metrics"
	defaultReplicas   = int32(2)
	receiverUID       = int64(65532) // distroless nonroot
)

// RenderOptions are the operator-wide inputs of rendering.
type RenderOptions struct {
	// ReceiverImage is used unless the SegmentWebhook overrides it.
	ReceiverImage string
}

// ChildName is the name shared by all children of a SegmentWebhook.
func ChildName(swh *segmentv1alpha1.SegmentWebhook) string { return swh.Name + "-receiver" }

// NameLabel names the SegmentWebhook a child belongs to. It is not app.kubernetes.io/instance:
// Argo CD tracks its applications by that label, and a SegmentWebhook named like an Argo CD
// application would otherwise have its children pruned as that application's strays.
const NameLabel = "segment.webhook-operator.io/name"

// managedBy is the app.kubernetes.io/part-of and managed-by label value of every child; the
// manager's cache selects on it (managedOnly).
const managedBy = "segment-webhook-operator"

// selectorLabels select the receiver pods of one SegmentWebhook; they never change, because a
// Deployment's selector is immutable (see keepLiveSelector for Deployments made before).
func selectorLabels(swh *segmentv1alpha1.SegmentWebhook) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name": "segment-webhook-receiver",
		NameLabel:                swh.Name,
	}
}

// childLabels label every child.
func childLabels(swh *segmentv1alpha1.SegmentWebhook) map[string]string {
	l := selectorLabels(swh)
	l["app.kubernetes.io/component"] = "receiver"
	l["app.kubernetes.io/part-of"] = managedBy
	l["app.kubernetes.io/managed-by"] = managedBy
	return l
}

func childMeta(swh *segmentv1alpha1.SegmentWebhook) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: ChildName(swh), Namespace: swh.Namespace, Labels: childLabels(swh)}
}

// secretFile is where a referenced Secret key is mounted in the receiver pod.
func secretFile(ref segmentv1alpha1.SecretKeyRef) string {
	return path.Join(secretsMountPath, ref.Name, ref.Key)
}

// newReceiverConfig renders the receiver's configuration: the contract in receiver/config.
func newReceiverConfig(swh *segmentv1alpha1.SegmentWebhook) *config.Config {
	spec := &swh.Spec
	c := &config.Config{
		Source:      "segment-webhook-operator/" + swh.Namespace + "/" + swh.Name,
		Path:        swh.Spec.WebhookPath(),
		Port:        config.DefaultPort,
		MetricsPort: config.DefaultMetricsPort,
		Authentication: config.Authentication{
			Mode: string(spec.Authentication.Mode),
		},
		Validation: string(spec.Validation),
		Limits: config.Limits{
			MaxBodyBytes: spec.Limits.MaxBodyBytes,
			MaxEvents:    int(spec.Limits.MaxEvents),
		},
		Delivery: config.Delivery{
			Budget:         duration(spec.Delivery.Budget),
			MaxAttempts:    int(spec.Delivery.MaxAttempts),
			InitialBackoff: duration(spec.Delivery.InitialBackoff),
			MaxBackoff:     duration(spec.Delivery.MaxBackoff),
			DedupeWindow:   duration(spec.Delivery.DedupeWindow),
		},
	}
	for _, ref := range spec.SecretRefs {
		c.Authentication.SecretFiles = append(c.Authentication.SecretFiles, secretFile(ref))
	}
	if ref := spec.Authentication.BearerTokenSecretRef; ref != nil {
		c.Authentication.SecretFiles = append(c.Authentication.SecretFiles, secretFile(*ref))
	}
	for _, t := range spec.Targets {
		c.Targets = append(c.Targets, receiverTarget(t))
	}
	if spec.Authentication.Mode == segmentv1alpha1.AuthenticationHMAC {
		c.Authentication.Signature = string(spec.Authentication.Signature)
	}
	if d := spec.DeadLetter; d != nil {
		c.DeadLetter = &config.Target{Name: config.DeadLetterName}
		setTargetKind(c.DeadLetter, d.HTTP, d.Kafka, d.NATS)
	}
	c.Default()
	return c
}

// duration converts an optional API duration; an unset one gets the receiver's default.
func duration(d *metav1.Duration) config.Duration {
	if d == nil {
		return config.Duration{}
	}
	return config.D(d.Duration)
}

func receiverTarget(t segmentv1alpha1.Target) config.Target {
	out := config.Target{Name: t.Name, Optional: t.Optional, DropFields: t.DropFields, Filter: ReceiverFilter(t.Filter)}
	setTargetKind(&out, t.HTTP, t.Kafka, t.NATS)
	return out
}

// ReceiverFilter is a target's filter as the receiver gets it; kubectl swh routes by it too.
func ReceiverFilter(f *segmentv1alpha1.TargetFilter) config.Filter {
	if f == nil {
		return config.Filter{}
	}
	out := config.Filter{TrackEvents: f.TrackEvents}
	for _, et := range f.EventTypes {
		out.EventTypes = append(out.EventTypes, string(et))
	}
	return out
}

// setTargetKind renders the one target kind that is set, for a target or the dead-letter target.
func setTargetKind(out *config.Target, h *segmentv1alpha1.HTTPTarget, k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget) {
	if h != nil {
		out.HTTP = &config.HTTPTarget{URL: h.URL, Method: h.Method, Format: string(h.Format),
			Concurrency: int(h.Concurrency)}
		if b := h.Batch; b != nil {
			out.HTTP.Batch = &config.HTTPBatch{MaxEvents: int(b.MaxEvents), MaxBytes: b.MaxBytes}
		}
		for name, value := range h.Headers {
			if out.HTTP.Headers == nil {
				out.HTTP.Headers = map[string]string{}
			}
			out.HTTP.Headers[name] = string(value)
		}
		for _, hf := range h.HeadersFrom {
			if out.HTTP.HeaderFiles == nil {
				out.HTTP.HeaderFiles = map[string]string{}
			}
			out.HTTP.HeaderFiles[hf.Name] = secretFile(hf.SecretKeyRef)
		}
	}
	if k != nil {
		out.Kafka = &config.KafkaTarget{
			Brokers:     k.Brokers,
			Topic:       k.Topic,
			Key:         string(k.Key),
			Compression: string(k.Compression),
			TLS:         receiverTLS(k.TLS),
		}
		if s := k.SASL; s != nil {
			out.Kafka.SASL = &config.KafkaSASL{
				Mechanism:    string(s.Mechanism),
				UsernameFile: optionalSecretFile(s.UsernameSecretRef),
				PasswordFile: optionalSecretFile(s.PasswordSecretRef),
			}
		}
	}
	if n != nil {
		out.NATS = &config.NATSTarget{
			URLs:            n.URLs,
			Subject:         n.Subject,
			Stream:          n.Stream,
			CredentialsFile: optionalSecretFile(n.CredentialsSecretRef),
			TokenFile:       optionalSecretFile(n.TokenSecretRef),
			UsernameFile:    optionalSecretFile(n.UsernameSecretRef),
			PasswordFile:    optionalSecretFile(n.PasswordSecretRef),
			TLS:             receiverTLS(n.TLS),
		}
	}
}

// optionalSecretFile is secretFile for an optional reference; "" when it is not set.
func optionalSecretFile(ref *segmentv1alpha1.SecretKeyRef) string {
	if ref == nil {
		return ""
	}
	return secretFile(*ref)
}

func receiverTLS(t *segmentv1alpha1.TargetTLS) *config.TLS {
	if t == nil {
		return nil
	}
	return &config.TLS{
		CAFile:   optionalSecretFile(t.CASecretRef),
		CertFile: optionalSecretFile(t.CertSecretRef),
		KeyFile:  optionalSecretFile(t.KeySecretRef),
	}
}

// newConfigMap renders the receiver's ConfigMap from its config JSON.
func newConfigMap(swh *segmentv1alpha1.SegmentWebhook, configJSON []byte) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: childMeta(swh),
		Data:       map[string]string{config.FileName: string(configJSON)},
	}
}

// configHash digests the receiver config. Only a config change rolls the pods: Secret values
// reach running receivers through their mounted files, which the receiver reloads, so rotating a
// Secret keeps the pods and their per-target messageId memory.
func configHash(configJSON []byte) string {
	h := sha256.Sum256(configJSON)
	return hex.EncodeToString(h[:])[:32]
}

// newDeployment renders the receiver Deployment: restricted Pod Security Standard, no API access.
func newDeployment(swh *segmentv1alpha1.SegmentWebhook, opts RenderOptions, hash string) *appsv1.Deployment {
	spec := &swh.Spec
	image := opts.ReceiverImage
	if spec.Image != "" {
		image = spec.Image
	}
	podLabels := maps.Clone(spec.Pod.Labels)
	if podLabels == nil {
		podLabels = map[string]string{}
	}
	maps.Copy(podLabels, childLabels(swh))
	podAnnotations := maps.Clone(spec.Pod.Annotations)
	if podAnnotations == nil {
		podAnnotations = map[string]string{}
	}
	podAnnotations[ConfigHashAnnotation] = hash

	var replicas *int32
	if spec.Autoscaling == nil { // the HPA owns replicas otherwise
		replicas = ptr.To(ptr.Deref(spec.Replicas, defaultReplicas))
	}

	volumes, mounts := podVolumes(swh)
	dep := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: childMeta(swh),
		Spec: appsv1.DeploymentSpec{
			Replicas: replicas,
			Selector: &metav1.LabelSelector{MatchLabels: selectorLabels(swh)},
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				// Never drop below the desired capacity while rolling: Segment is sending.
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: ptr.To(intstr.FromInt32(0)),
					MaxSurge:       ptr.To(intstr.FromInt32(1)),
				},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: podAnnotations},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken:  ptr.To(false),
					EnableServiceLinks:            ptr.To(false),
					TerminationGracePeriodSeconds: ptr.To(int64(30)),
					NodeSelector:                  spec.Pod.NodeSelector,
					Tolerations:                   spec.Pod.Tolerations,
					Affinity:                      spec.Pod.Affinity,
					PriorityClassName:             spec.Pod.PriorityClassName,
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To(receiverUID),
						RunAsGroup:     ptr.To(receiverUID),
						FSGroup:        ptr.To(receiverUID),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{receiverContainerSpec(swh, image, mounts)},
					Volumes:    volumes,
				},
			},
		},
	}
	return dep
}

func receiverContainerSpec(swh *segmentv1alpha1.SegmentWebhook, image string, mounts []corev1.VolumeMount) corev1.Container {
	resources := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("50m"),
			corev1.ResourceMemory: resource.MustParse("64Mi"),
		},
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
	if swh.Spec.Resources != nil {
		resources = *swh.Spec.Resources.DeepCopy()
	}
	probe := func(probePath string, period int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{
				HTTPGet: &corev1.HTTPGetAction{Path: probePath, Port: intstr.FromString(httpPortName)},
			},
			PeriodSeconds: period,
		}
	}
	return corev1.Container{
		Name:  receiverContainer,
		Image: image,
		Args:  []string{"--config=" + path.Join(configMountPath, config.FileName)},
		Env:   memoryLimitEnv(resources),
		Ports: []corev1.ContainerPort{
			{Name: httpPortName, ContainerPort: config.DefaultPort, Protocol: corev1.ProtocolTCP},
			{Name: metricsPortName, ContainerPort: config.DefaultMetricsPort, Protocol: corev1.ProtocolTCP},
		},
		ReadinessProbe: probe("/readyz", 5),
		LivenessProbe:  probe("/healthz", 10),
		Resources:      resources,
		VolumeMounts:   mounts,
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			RunAsNonRoot:             ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
}

// memoryLimitEnv sets GOMEMLIMIT to the container's memory limit (downward API), so the Go
// runtime collects garbage harder as the heap nears the limit instead of being OOM-killed, and,
// with that bound in place, GOGC to receiverGCPercent. Without a memory limit there is nothing
// to follow, and Go's defaults stay.
func memoryLimitEnv(resources corev1.ResourceRequirements) []corev1.EnvVar {
	if _, ok := resources.Limits[corev1.ResourceMemory]; !ok {
		return nil
	}
	return []corev1.EnvVar{{
		Name: "GOMEMLIMIT",
		ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
			ContainerName: receiverContainer,
			Resource:      "limits.memory",
			Divisor:       resource.MustParse("1"),
		}},
	}, {Name: "GOGC", Value: strconv.Itoa(receiverGCPercent)}}
}

// receiverGCPercent lets a receiver's heap grow to three times its live size between collections
// instead of two. Its live heap is small (config, pools, the messageId memory) and every request
// leaves garbage, so collections are frequent: fewer of them cost about a sixth less CPU per
// single-event request (make bench-receiver), and GOMEMLIMIT still bounds the heap.
const receiverGCPercent = 200

func secretVolumeName(i int) string { return fmt.Sprintf("secret-%d", i) }

// podVolumes returns the receiver pod's volumes and the container's mounts of them: the config
// and, per referenced Secret, only the referenced keys, each under secretsMountPath/<Secret name>.
func podVolumes(swh *segmentv1alpha1.SegmentWebhook) ([]corev1.Volume, []corev1.VolumeMount) {
	secrets := swh.Spec.SecretNames()
	volumes := append(make([]corev1.Volume, 0, 1+len(secrets)), corev1.Volume{
		Name: configVolume,
		VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: ChildName(swh)},
			DefaultMode:          ptr.To(int32(0o444)),
		}},
	})
	mounts := append(make([]corev1.VolumeMount, 0, 1+len(secrets)),
		corev1.VolumeMount{Name: configVolume, MountPath: configMountPath, ReadOnly: true})
	keys := map[string][]string{}
	for _, ref := range swh.Spec.SecretKeyRefs() {
		if !slices.Contains(keys[ref.Name], ref.Key) {
			keys[ref.Name] = append(keys[ref.Name], ref.Key)
		}
	}
	for i, name := range secrets {
		items := make([]corev1.KeyToPath, 0, len(keys[name]))
		for _, key := range keys[name] {
			items = append(items, corev1.KeyToPath{Key: key, Path: key})
		}
		volumes = append(volumes, corev1.Volume{
			Name: secretVolumeName(i),
			VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: name, Items: items, DefaultMode: ptr.To(int32(0o440)),
			}},
		})
		mounts = append(mounts, corev1.VolumeMount{
			Name: secretVolumeName(i), MountPath: path.Join(secretsMountPath, name), ReadOnly: true,
		})
	}
	return volumes, mounts
}

// newService renders the receiver Service.
func newService(swh *segmentv1alpha1.SegmentWebhook) *corev1.Service {
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: childMeta(swh),
		Spec: corev1.ServiceSpec{
			Type:     swh.Spec.Service.Type,
			Selector: selectorLabels(swh),
			Ports: []corev1.ServicePort{{
				Name: httpPortName, Port: swh.Spec.Service.Port, Protocol: corev1.ProtocolTCP,
				TargetPort: intstr.FromString(httpPortName),
			}},
		},
	}
	svc.Annotations = swh.Spec.Service.Annotations
	return svc
}

// newIngress renders the receiver Ingress, or nil when spec.ingress is not set.
func newIngress(swh *segmentv1alpha1.SegmentWebhook) *networkingv1.Ingress {
	in := swh.Spec.Ingress
	if in == nil {
		return nil
	}
	ing := &networkingv1.Ingress{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
		ObjectMeta: childMeta(swh),
		Spec: networkingv1.IngressSpec{
			IngressClassName: in.ClassName,
			Rules: []networkingv1.IngressRule{{
				Host: in.Host,
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
					Paths: []networkingv1.HTTPIngressPath{{
						Path:     swh.Spec.WebhookPath(),
						PathType: ptr.To(networkingv1.PathTypeExact),
						Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
							Name: ChildName(swh),
							Port: networkingv1.ServiceBackendPort{Name: httpPortName},
						}},
					}},
				}},
			}},
		},
	}
	ing.Annotations = ingressAnnotations(swh)
	if in.TLSSecretName != "" {
		ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{in.Host}, SecretName: in.TLSSecretName}}
	}
	return ing
}

// nginxBodySizeAnnotation is ingress-nginx's request body limit. Its default, 1m, is far below
// what a receiver accepts, and the 413 it answers larger batches with is not retried by Segment.
const nginxBodySizeAnnotation = "nginx.ingress.kubernetes.io/proxy-body-size"

// ingressAnnotations are spec.ingress.annotations and, for an ingress-nginx class, a body limit
// equal to the receiver's (limits.maxBodyBytes) unless the spec sets one.
func ingressAnnotations(swh *segmentv1alpha1.SegmentWebhook) map[string]string {
	in := swh.Spec.Ingress
	if in.ClassName == nil || !strings.Contains(*in.ClassName, "nginx") {
		return in.Annotations
	}
	if _, set := in.Annotations[nginxBodySizeAnnotation]; set {
		return in.Annotations
	}
	annotations := maps.Clone(in.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[nginxBodySizeAnnotation] = strconv.FormatInt(cmp.Or(swh.Spec.Limits.MaxBodyBytes, config.DefaultMaxBodyBytes), 10)
	return annotations
}

// newHorizontalPodAutoscaler renders the HPA, or nil when spec.autoscaling is not set.
func newHorizontalPodAutoscaler(swh *segmentv1alpha1.SegmentWebhook) *autoscalingv2.HorizontalPodAutoscaler {
	as := swh.Spec.Autoscaling
	if as == nil {
		return nil
	}
	return &autoscalingv2.HorizontalPodAutoscaler{
		TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
		ObjectMeta: childMeta(swh),
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{
				APIVersion: "apps/v1", Kind: "Deployment", Name: ChildName(swh),
			},
			MinReplicas: ptr.To(as.MinReplicas),
			MaxReplicas: as.MaxReplicas,
			Metrics: []autoscalingv2.MetricSpec{{
				Type: autoscalingv2.ResourceMetricSourceType,
				Resource: &autoscalingv2.ResourceMetricSource{
					Name: corev1.ResourceCPU,
					Target: autoscalingv2.MetricTarget{
						Type:               autoscalingv2.UtilizationMetricType,
						AverageUtilization: ptr.To(as.TargetCPUUtilizationPercentage),
					},
				},
			}},
		},
	}
}

// PodDisruptionBudget keeps one receiver serving during voluntary disruptions; nil when the
// receiver may run a single replica, where a PDB would block node drains.
func newPodDisruptionBudget(swh *segmentv1alpha1.SegmentWebhook) *policyv1.PodDisruptionBudget {
	minReplicas := ptr.Deref(swh.Spec.Replicas, defaultReplicas)
	if as := swh.Spec.Autoscaling; as != nil {
		minReplicas = as.MinReplicas
	}
	if minReplicas <= 1 {
		return nil
	}
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		ObjectMeta: childMeta(swh),
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: ptr.To(intstr.FromInt32(1)),
			Selector:       &metav1.LabelSelector{MatchLabels: selectorLabels(swh)},
		},
	}
}

// publicURL is where Segment should send events: the Ingress or the HTTPRoute when the
// SegmentWebhook has one (routed; not while its host is another's), else the address a
// LoadBalancer Service was given; "" while the receiver is reachable only inside the cluster.
func publicURL(swh *segmentv1alpha1.SegmentWebhook, routed bool, svc *corev1.Service) string {
	if routed && swh.Spec.Gateway != nil {
		return gatewayURL(swh)
	}
	if in := swh.Spec.Ingress; routed && in != nil {
		scheme := "http"
		if in.TLSSecretName != "" {
			scheme = "https"
		}
		return scheme + "://" + in.Host + swh.Spec.WebhookPath()
	}
	if svc == nil || svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Status.LoadBalancer.Ingress) == 0 {
		return ""
	}
	lb := svc.Status.LoadBalancer.Ingress[0]
	host := lb.Hostname
	if host == "" {
		host = lb.IP
	}
	return "http://" + hostPort(host, swh.Spec.Service.Port) + swh.Spec.WebhookPath()
}

// inClusterURL is the receiver's address through its Service.
func inClusterURL(swh *segmentv1alpha1.SegmentWebhook) string {
	return "http://" + hostPort(ChildName(swh)+"."+swh.Namespace+".svc", swh.Spec.Service.Port) + swh.Spec.WebhookPath()
}

// hostPort leaves out the default HTTP port.
func hostPort(host string, port int32) string {
	if port == 80 {
		if strings.Contains(host, ":") { // IPv6
			return "[" + host + "]"
		}
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}
