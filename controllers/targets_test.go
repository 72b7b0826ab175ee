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

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

func ref(name, key string) *segmentv1alpha1.SecretKeyRef {
	return &segmentv1alpha1.SecretKeyRef{Name: name, Key: key}
}

// kafkaTarget is a complete Kafka target: SASL over TLS with a private CA.
func kafkaTarget() segmentv1alpha1.Target {
	return segmentv1alpha1.Target{
		Name: "events-kafka",
		Kafka: &segmentv1alpha1.KafkaTarget{
			Brokers: []string{"kafka-0.kafka.data.svc:9093", "kafka-1.kafka.data.svc:9093"},
			Topic:   "segment.events",
			TLS:     &segmentv1alpha1.TargetTLS{CASecretRef: ref("kafka-client", "ca.crt")},
			SASL: &segmentv1alpha1.KafkaSASL{
				Mechanism:         "SCRAM-SHA-512",
				UsernameSecretRef: ref("kafka-client", "username"),
				PasswordSecretRef: ref("kafka-client", "password"),
			},
		},
	}
}

// natsTarget is a complete NATS JetStream target with token authentication.
func natsTarget() segmentv1alpha1.Target {
	return segmentv1alpha1.Target{
		Name: "events-nats",
		NATS: &segmentv1alpha1.NATSTarget{
			URLs:           []string{"nats://nats.data.svc:4222"},
			Subject:        "segment.{type}",
			Stream:         "SEGMENT",
			TokenSecretRef: ref("nats-client", "token"),
		},
	}
}

var _ = Describe("Kafka and NATS targets", func() {
	var (
		ctx context.Context
		ns  string
		swh *segmentv1alpha1.SegmentWebhook
	)

	BeforeEach(func() {
		ctx = context.Background()
		ns, swh = sampleWithSecrets(ctx)
		swh.Spec.Targets = append(swh.Spec.Targets, kafkaTarget(), natsTarget())
	})

	It("renders them into the receiver config and mounts their Secret keys", func() {
		newSecret(ctx, ns, "kafka-client", map[string]string{
			"ca.crt": "-----BEGIN CERTIFICATE-----", "username": "swh", "password": "kafka-pa55", "unrelated": "x",
		})
		newSecret(ctx, ns, "nats-client", map[string]string{"token": "nats-t0ken"})
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Expect(swh.Spec.Targets[2].Kafka.Key).To(Equal(segmentv1alpha1.KafkaKeyMessageID), "key defaults to messageId")
		Expect(swh.Spec.Targets[2].Kafka.Compression).To(Equal(segmentv1alpha1.KafkaCompression("snappy")))

		cm := getChild[corev1.ConfigMap](ctx, swh)
		rc, err := config.Parse([]byte(cm.Data[config.FileName]))
		Expect(err).NotTo(HaveOccurred(), "the operator must render a config the receiver accepts")
		Expect(rc.Targets).To(HaveLen(4))
		k := rc.Targets[2].Kafka
		Expect(k).NotTo(BeNil())
		Expect(k.Brokers).To(Equal([]string{"kafka-0.kafka.data.svc:9093", "kafka-1.kafka.data.svc:9093"}))
		Expect(k.Topic).To(Equal("segment.events"))
		Expect(k.Key).To(Equal(config.KafkaKeyMessageID))
		Expect(k.Compression).To(Equal(config.CompressionSnappy))
		Expect(k.TLS).To(Equal(&config.TLS{CAFile: "/etc/segment-webhook/secrets/kafka-client/ca.crt"}))
		Expect(k.SASL).To(Equal(&config.KafkaSASL{
			Mechanism:    config.SASLScramSHA512,
			UsernameFile: "/etc/segment-webhook/secrets/kafka-client/username",
			PasswordFile: "/etc/segment-webhook/secrets/kafka-client/password",
		}))
		n := rc.Targets[3].NATS
		Expect(n).NotTo(BeNil())
		Expect(n.URLs).To(Equal([]string{"nats://nats.data.svc:4222"}))
		Expect(n.Subject).To(Equal("segment.{type}"))
		Expect(n.Stream).To(Equal("SEGMENT"))
		Expect(n.TokenFile).To(Equal("/etc/segment-webhook/secrets/nats-client/token"))
		Expect(rc.Files()).To(ContainElements(k.SASL.PasswordFile, n.TokenFile, k.TLS.CAFile))
		for _, secret := range []string{"kafka-pa55", "nats-t0ken", "swh\""} {
			Expect(cm.Data[config.FileName]).NotTo(ContainSubstring(secret), "secret values never reach the ConfigMap")
		}

		dep := getChild[appsv1.Deployment](ctx, swh)
		pod := dep.Spec.Template.Spec
		var kafkaVolume, natsVolume *corev1.SecretVolumeSource
		for _, v := range pod.Volumes {
			if v.Secret != nil && v.Secret.SecretName == "kafka-client" {
				kafkaVolume = v.Secret
			}
			if v.Secret != nil && v.Secret.SecretName == "nats-client" {
				natsVolume = v.Secret
			}
		}
		Expect(kafkaVolume).NotTo(BeNil())
		Expect(kafkaVolume.Items).To(ConsistOf(
			corev1.KeyToPath{Key: "ca.crt", Path: "ca.crt"},
			corev1.KeyToPath{Key: "username", Path: "username"},
			corev1.KeyToPath{Key: "password", Path: "password"},
		), "only the referenced keys are mounted")
		Expect(natsVolume).NotTo(BeNil())
		Expect(natsVolume.Items).To(ConsistOf(corev1.KeyToPath{Key: "token", Path: "token"}))
		Expect(pod.Containers[0].VolumeMounts).To(ContainElements(
			HaveField("MountPath", "/etc/segment-webhook/secrets/kafka-client"),
			HaveField("MountPath", "/etc/segment-webhook/secrets/nats-client"),
		))

		Eventually(func(g Gomega) {
			got := &segmentv1alpha1.SegmentWebhook{}
			g.Expect(k8sClient.Get(ctx, key(swh), got)).To(Succeed())
			g.Expect(meta.FindStatusCondition(got.Status.Conditions, segmentv1alpha1.ConditionSecretsResolved)).
				To(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonSecretsResolved))
		}).Should(Succeed())

		// The Secret watch covers target Secrets too: removing the Kafka password key is seen.
		update(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kafka-client"}}, func(s *corev1.Secret) {
			delete(s.Data, "password")
		})
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonSecretKeyNotFound))
		Expect(readyCondition(ctx, swh)().Message).To(ContainSubstring(`Secret "kafka-client" has no key "password"`))
	})

	It("reports a missing SASL password Secret and recovers when it appears", func() {
		newSecret(ctx, ns, "nats-client", map[string]string{"token": "nats-t0ken"})
		newSecret(ctx, ns, "kafka-client", map[string]string{"ca.crt": "-", "username": "swh", "password": "p"})
		swh.Spec.Targets[2].Kafka.SASL.PasswordSecretRef = ref("kafka-password", "password")
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonSecretNotFound))
		Expect(readyCondition(ctx, swh)().Message).To(ContainSubstring(`Secret "kafka-password" not found`))
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, childKey(swh), &appsv1.Deployment{}))).To(BeTrue(),
			"no receiver is started with a Secret that cannot be mounted")

		newSecret(ctx, ns, "kafka-password", map[string]string{"password": "p"})
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonDeploymentProgressing))
		getChild[appsv1.Deployment](ctx, swh)
	})

	DescribeTable("the API server refuses a bad Kafka or NATS target with a readable message",
		func(mutate func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec), message string) {
			mutate(swh.Spec.Targets[2].Kafka, swh.Spec.Targets[3].NATS, &swh.Spec)
			err := k8sClient.Create(ctx, swh)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "expected Invalid, got %v", err)
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("two target kinds", func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Targets[2].NATS = n
		}, "exactly one target kind (http, kafka or nats) must be set"),
		Entry("no brokers", func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec) {
			k.Brokers = []string{}
		}, "should have at least 1 items"),
		Entry("a broker without a port", func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec) {
			k.Brokers = []string{"kafka-0.kafka:9093", "kafka-1.kafka"}
		}, "each broker must be host:port"),
		Entry("a broker given as a URL", func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec) {
			k.Brokers = []string{"kafka://kafka-0:9093"}
		}, "each broker must be host:port"),
		Entry("a topic with a slash", func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec) {
			k.Topic = "segment/events"
		}, "topic must be 1-249 characters of [a-zA-Z0-9._-] and not . or .."),
		Entry("the topic ..", func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec) {
			k.Topic = ".."
		}, "topic must be 1-249 characters of [a-zA-Z0-9._-] and not . or .."),
		Entry("an unknown key", func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec) {
			k.Key = "email"
		}, `Unsupported value: "email"`),
		Entry("an unknown compression", func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec) {
			k.Compression = "brotli"
		}, `Unsupported value: "brotli"`),
		Entry("SASL without a password", func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec) {
			k.SASL.PasswordSecretRef = nil
		}, "sasl needs both usernameSecretRef and passwordSecretRef"),
		Entry("an unknown SASL mechanism", func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec) {
			k.SASL.Mechanism = "GSSAPI"
		}, `Unsupported value: "GSSAPI"`),
		Entry("a client certificate without its key", func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec) {
			k.TLS.CertSecretRef = ref("kafka-client", "tls.crt")
		}, "certSecretRef and keySecretRef must be set together"),
		Entry("a NATS URL with another scheme", func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec) {
			n.URLs = []string{"http://nats.data.svc:4222"}
		}, "urls must be nats:// or tls:// URLs with a host and without credentials"),
		Entry("a NATS URL with credentials", func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec) {
			n.URLs = []string{"nats://user:pass@nats.data.svc:4222"}
		}, "urls must be nats:// or tls:// URLs with a host and without credentials"),
		Entry("no NATS URLs", func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec) {
			n.URLs = nil
		}, "urls: Required value"),
		Entry("a wildcard subject", func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec) {
			n.Subject = "segment.>"
		}, "subject must be dot-separated tokens of [A-Za-z0-9_-], with {type} the only placeholder"),
		Entry("an unknown placeholder", func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec) {
			n.Subject = "segment.{event}"
		}, "subject must be dot-separated tokens of [A-Za-z0-9_-], with {type} the only placeholder"),
		Entry("an empty subject token", func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec) {
			n.Subject = "segment..{type}"
		}, "subject must be dot-separated tokens of [A-Za-z0-9_-], with {type} the only placeholder"),
		Entry("a stream name with a dot", func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec) {
			n.Stream = "segment.events"
		}, "stream must be characters of [A-Za-z0-9_-]"),
		Entry("two NATS authentication methods", func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec) {
			n.CredentialsSecretRef = ref("nats-client", "user.creds")
		}, "set at most one of credentialsSecretRef, tokenSecretRef, or usernameSecretRef with passwordSecretRef"),
		Entry("a NATS username without a password", func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec) {
			n.TokenSecretRef = nil
			n.UsernameSecretRef = ref("nats-client", "username")
		}, "usernameSecretRef and passwordSecretRef must be set together"),
		Entry("a NATS client key without its certificate", func(k *segmentv1alpha1.KafkaTarget, n *segmentv1alpha1.NATSTarget, s *segmentv1alpha1.SegmentWebhookSpec) {
			n.TLS = &segmentv1alpha1.TargetTLS{KeySecretRef: ref("nats-client", "tls.key")}
		}, "certSecretRef and keySecretRef must be set together"),
	)

	It("accepts minimal Kafka and NATS targets, user and password auth, and mutual TLS", func() {
		swh.Spec.Targets[2].Kafka = &segmentv1alpha1.KafkaTarget{Brokers: []string{"[fd00::1]:9092"}, Topic: "events", Key: segmentv1alpha1.KafkaKeyUserID, Compression: "zstd"}
		swh.Spec.Targets[3].NATS = &segmentv1alpha1.NATSTarget{
			URLs: []string{"tls://nats-0.nats:4222", "tls://nats-1.nats:4222"}, Subject: "{type}",
			UsernameSecretRef: ref("nats-client", "username"), PasswordSecretRef: ref("nats-client", "password"),
			TLS: &segmentv1alpha1.TargetTLS{CertSecretRef: ref("nats-tls", "tls.crt"), KeySecretRef: ref("nats-tls", "tls.key")},
		}
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Expect(swh.Spec.SecretNames()).To(ContainElements("nats-client", "nats-tls"))
	})
})
