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

package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// SegmentWebhookSpec describes a Segment webhook receiver and where it forwards events.
//
// +kubebuilder:validation:XValidation:rule="self.authentication.mode != 'HMAC' || (has(self.secretRefs) && size(self.secretRefs) > 0)",message="authentication mode HMAC needs at least one entry in secretRefs"
// +kubebuilder:validation:XValidation:rule="self.authentication.mode == 'HMAC' || !has(self.secretRefs) || size(self.secretRefs) == 0",message="secretRefs are only used by authentication mode HMAC"
// +kubebuilder:validation:XValidation:rule="!(has(self.replicas) && has(self.autoscaling))",message="set either replicas or autoscaling, not both"
// +kubebuilder:validation:XValidation:rule="!(has(self.ingress) && has(self.gateway))",message="set either ingress or gateway, not both"
// +kubebuilder:validation:XValidation:rule="!has(self.trackingPlan) || !has(self.trackingPlan.onViolation) || self.trackingPlan.onViolation != 'DeadLetter' || has(self.deadLetter)",message="trackingPlan.onViolation DeadLetter needs spec.deadLetter"
// +kubebuilder:validation:XValidation:rule="!has(self.deadLetter) || self.targets.all(t, t.name != 'dead-letter')",message="a target may not be named dead-letter when spec.deadLetter is set: the dead-letter target has that name in metrics and logs"
// +kubebuilder:validation:XValidation:rule="!has(self.networkPolicy) || has(self.networkPolicy.trafficNamespaces) || (has(self.service) && has(self.service.type) && self.service.type in ['LoadBalancer', 'NodePort'])",message="networkPolicy.trafficNamespaces is required with a ClusterIP Service: name the namespaces of the ingress controller or Gateway that forwards Segment's requests"
type SegmentWebhookSpec struct {
	// SecretRefs name the Secret keys holding the HMAC shared secret that Segment uses to sign
	// requests (X-Signature). A request signed with any of them is accepted: list the old and the
	// new secret while rotating, since Segment sends no key id.
	// +optional
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=5
	// +listType=atomic
	SecretRefs []SecretKeyRef `json:"secretRefs,omitempty"`

	// Authentication selects how requests are authenticated.
	// +kubebuilder:default={}
	// +optional
	Authentication Authentication `json:"authentication,omitempty"`

	// Targets receive the events. A request is acknowledged to Segment only when every target
	// that is not optional has accepted every event routed to it (or, with deadLetter, the
	// dead-letter target has the events a target refused for good).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	Targets []Target `json:"targets"`

	// DeadLetter receives, wrapped in an envelope (reason, target, index, the original bytes),
	// each event that fails validation and each event a required target refuses for good (a 4xx).
	// With it, such a request is acknowledged once every other event is delivered; without it,
	// an invalid event refuses the whole request (400, which Segment does not retry) and a
	// refusal answers 503 until Segment gives up.
	// +optional
	DeadLetter *DeadLetterTarget `json:"deadLetter,omitempty"`

	// TrackingPlan checks every event against JSON Schemas (draft 2020-12) held in a ConfigMap,
	// before any target sees it. See the README, "Tracking plans".
	// +optional
	TrackingPlan *TrackingPlan `json:"trackingPlan,omitempty"`

	// Delivery tunes retries and deduplication towards the targets.
	// +kubebuilder:default={}
	// +optional
	Delivery Delivery `json:"delivery,omitempty"`

	// Validation is Strict (enforce the Segment Spec's required fields per event type) or Lenient
	// (forward any JSON object with a type; use it when the Actions payload is remapped).
	// +kubebuilder:validation:Enum=Strict;Lenient
	// +kubebuilder:default=Strict
	// +optional
	Validation ValidationMode `json:"validation,omitempty"`

	// Limits bound the size of one request.
	// +kubebuilder:default={}
	// +optional
	Limits Limits `json:"limits,omitempty"`

	// Replicas of the receiver when autoscaling is not set. Defaults to 2; with more than one
	// replica a PodDisruptionBudget keeps at least one serving.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=50
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Autoscaling creates a HorizontalPodAutoscaler for the receiver.
	// +optional
	Autoscaling *Autoscaling `json:"autoscaling,omitempty"`

	// Service exposes the receiver inside the cluster.
	// +kubebuilder:default={}
	// +optional
	Service ServiceSpec `json:"service,omitempty"`

	// Ingress exposes the receiver to Segment. Removing it deletes the Ingress.
	// +optional
	Ingress *IngressSpec `json:"ingress,omitempty"`

	// Gateway exposes the receiver through a Gateway API HTTPRoute instead of an Ingress.
	// Removing it deletes the HTTPRoute.
	// +optional
	Gateway *GatewaySpec `json:"gateway,omitempty"`

	// NetworkPolicy, when set, isolates the receiver pods with an operator-rendered
	// NetworkPolicy. Removing it deletes the NetworkPolicy.
	// +optional
	NetworkPolicy *NetworkPolicySpec `json:"networkPolicy,omitempty"`

	// Image overrides the receiver image the operator was started with. Whoever may edit a
	// SegmentWebhook thus chooses what runs with the namespace's referenced Secrets mounted; the
	// operator's --allowed-receiver-images can restrict it (ImageNotAllowed otherwise).
	// +kubebuilder:validation:MinLength=1
	// +optional
	Image string `json:"image,omitempty"`

	// Resources of the receiver container. Defaults to requests of 50m CPU and 64Mi memory and a
	// 256Mi memory limit. The receiver's GOMEMLIMIT is set to the memory limit.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// Pod holds scheduling and metadata overrides for the receiver pods. The operator's
	// --allow-scheduling-overrides=false refuses nodeSelector, tolerations, affinity and
	// priorityClassName (SchedulingNotAllowed).
	// +optional
	Pod PodOverrides `json:"pod,omitempty"`

	// Suspend pauses reconciliation: the receiver keeps running as it is, and neither changes to
	// this SegmentWebhook nor drift of its children are acted on until it is unset.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// SecretKeyRef selects one key of a Secret in the SegmentWebhook's namespace.
type SecretKeyRef struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// Key within the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}

// AuthenticationMode says how the receiver authenticates Segment.
// +kubebuilder:validation:Enum=HMAC;Bearer;None
type AuthenticationMode string

const (
	// AuthenticationHMAC verifies Segment's X-Signature with the secrets of secretRefs.
	AuthenticationHMAC AuthenticationMode = "HMAC"
	// AuthenticationBearer expects "Authorization: Bearer <token>" (Extensible Webhook destination).
	AuthenticationBearer AuthenticationMode = "Bearer"
	// AuthenticationNone accepts unauthenticated requests; it must be chosen explicitly.
	AuthenticationNone AuthenticationMode = "None"
)

// Authentication selects how requests are authenticated.
// +kubebuilder:validation:XValidation:rule="(has(self.mode) && self.mode == 'Bearer') == has(self.bearerTokenSecretRef)",message="bearerTokenSecretRef is required with mode Bearer and not allowed otherwise"
type Authentication struct {
	// Mode is HMAC (Segment's X-Signature, the default), Bearer (Authorization header) or None.
	// +kubebuilder:default=HMAC
	// +optional
	Mode AuthenticationMode `json:"mode,omitempty"`
	// BearerTokenSecretRef holds the expected bearer token for mode Bearer.
	// +optional
	BearerTokenSecretRef *SecretKeyRef `json:"bearerTokenSecretRef,omitempty"`
	// Signature (mode HMAC): FullBody (recommended) accepts only signatures over the whole body:
	// X-Segment-Signature, which Segment sends once "Use X-Segment-Signature Header" is turned on
	// in the Actions Webhook destination, or a whole-body X-Signature. Any (the default, for
	// Segment's legacy batch signing) also accepts an X-Signature over a batch's first element
	// only, and so is much weaker than it looks: any one signed request ever captured (a proxy or
	// load balancer log, a leaked request), a single event too since element 0 of
	// [event, forged...] is exactly that event, lets whoever holds it inject any events after it,
	// for as long as the secret is valid (Segment signs no timestamp). While a SegmentWebhook runs
	// Any, its SignatureCoverage condition is False with reason FirstElementOnly (informational:
	// Ready does not depend on it).
	// +kubebuilder:validation:Enum=Any;FullBody
	// +kubebuilder:default=Any
	// +optional
	Signature SignatureMode `json:"signature,omitempty"`
}

// SignatureMode says which HMAC signatures are accepted.
type SignatureMode string

const (
	// SignatureAny accepts whole-body signatures and first-element signatures of batches.
	SignatureAny SignatureMode = "Any"
	// SignatureFullBody accepts only signatures over the whole body.
	SignatureFullBody SignatureMode = "FullBody"
)

// DeadLetterTarget is where events go that Segment would not retry. Exactly one kind is set.
// +kubebuilder:validation:XValidation:rule="[has(self.http), has(self.kafka), has(self.nats)].filter(k, k).size() == 1",message="exactly one dead-letter target kind (http, kafka or nats) must be set"
type DeadLetterTarget struct {
	// HTTP sends each envelope to an HTTP endpoint; with format cloudevents the envelope carries
	// the ce-deadletterreason and ce-deadlettertarget attributes.
	// +optional
	HTTP *HTTPTarget `json:"http,omitempty"`
	// Kafka produces each envelope as a record.
	// +optional
	Kafka *KafkaTarget `json:"kafka,omitempty"`
	// NATS publishes each envelope to JetStream ({type} in the subject is "dead-letter").
	// +optional
	NATS *NATSTarget `json:"nats,omitempty"`
}

// ValidationMode says how strictly events are checked.
type ValidationMode string

const (
	// ValidationStrict enforces the Segment Spec's required fields per event type.
	ValidationStrict ValidationMode = "Strict"
	// ValidationLenient forwards any JSON object that has a type.
	ValidationLenient ValidationMode = "Lenient"
)

// Target is one destination for events. Exactly one kind (http, kafka or nats) is set.
// +kubebuilder:validation:XValidation:rule="[has(self.http), has(self.kafka), has(self.nats)].filter(k, k).size() == 1",message="exactly one target kind (http, kafka or nats) must be set"
type Target struct {
	// Name identifies the target in metrics, logs and status; unique within the SegmentWebhook.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
	// Optional targets are best effort: their failures never make Segment retry.
	// +optional
	Optional bool `json:"optional,omitempty"`
	// Filter selects which events this target receives; empty means all.
	// +optional
	Filter *TargetFilter `json:"filter,omitempty"`
	// DropFields are dotted paths removed from each event before sending, such as "context.ip".
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:Pattern=`^[^.]+(\.[^.]+)*$`
	// +kubebuilder:validation:items:MaxLength=256
	// +listType=set
	// +optional
	DropFields []string `json:"dropFields,omitempty"`
	// HTTP sends each event to an HTTP endpoint.
	// +optional
	HTTP *HTTPTarget `json:"http,omitempty"`
	// Kafka produces each event as a record to a Kafka topic.
	// +optional
	Kafka *KafkaTarget `json:"kafka,omitempty"`
	// NATS publishes each event to a NATS JetStream stream.
	// +optional
	NATS *NATSTarget `json:"nats,omitempty"`
}

// EventType is a Segment event type; "delete" is Classic's user-deletion notification.
// +kubebuilder:validation:Enum=identify;track;page;screen;group;alias;delete
type EventType string

// TargetFilter selects events.
type TargetFilter struct {
	// EventTypes this target receives; empty means every type.
	// +kubebuilder:validation:MaxItems=7
	// +listType=set
	// +optional
	EventTypes []EventType `json:"eventTypes,omitempty"`
	// TrackEvents limits track events to these event names; other types are not affected.
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=256
	// +listType=set
	// +optional
	TrackEvents []string `json:"trackEvents,omitempty"`
}

// HTTPFormat is the body format sent to an HTTP target.
// +kubebuilder:validation:Enum=segment;cloudevents
type HTTPFormat string

const (
	// HTTPFormatSegment sends the event JSON as Segment sent it.
	HTTPFormatSegment HTTPFormat = "segment"
	// HTTPFormatCloudEvents sends a CloudEvent in binary content mode.
	HTTPFormatCloudEvents HTTPFormat = "cloudevents"
)

// HTTPTarget sends each event to an HTTP endpoint with an Idempotency-Key header, or with batch
// set JSON arrays of events.
// +kubebuilder:validation:XValidation:rule="!has(self.batch) || !has(self.format) || self.format == 'segment'",message="batch needs format segment"
type HTTPTarget struct {
	// URL of the endpoint, http or https, without credentials: the receiver config is a plain
	// ConfigMap, which the namespace's view role reads, so put them in headersFrom. A user:password@
	// is refused, and so are query parameters named token, access_token, api_key, apikey, key,
	// secret, password, sig or signature (in any case). This tightened in issue 20: an existing
	// SegmentWebhook with such a URL stays as it is, and where the API server ratchets validation
	// (Kubernetes 1.30 and later) other fields can still be changed; the URL itself, and on older
	// clusters any update, must move the credential into headersFrom.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",message="url must be an absolute http or https URL"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[A-Za-z][-+.A-Za-z0-9]*://[^/?#]*@')",message="url must not carry credentials (user:password@): the receiver config is a plain ConfigMap; send them from a Secret with headersFrom, such as an Authorization header"
	// +kubebuilder:validation:XValidation:rule="!self.matches('(?i)[?&](token|access_token|api_key|apikey|key|secret|password|sig|signature)=')",message="url must not carry a credential in its query (token, access_token, api_key, apikey, key, secret, password, sig or signature): the receiver config is a plain ConfigMap that the namespace's view role reads; send it from a Secret with headersFrom, such as an Authorization or X-Api-Key header"
	URL string `json:"url"`
	// Method is POST, PUT or PATCH.
	// +kubebuilder:validation:Enum=POST;PUT;PATCH
	// +kubebuilder:default=POST
	// +optional
	Method string `json:"method,omitempty"`
	// Headers are sent with every request as they are; they are readable in the receiver
	// ConfigMap by the namespace's view role. Credential headers are refused here and belong in
	// headersFrom: Authorization, Proxy-Authorization, Cookie, X-Api-Key, and any name containing
	// token, secret, password or api-key (in any case). This tightened in issue 20: an existing
	// SegmentWebhook with such a header stays as it is, and where the API server ratchets
	// validation (Kubernetes 1.30 and later) other fields can still be changed; the headers
	// themselves, and on older clusters any update, must move the credential into headersFrom.
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule=`self.all(name, name.matches("^[A-Za-z0-9!#$%&'*+.^_\x60|~-]+$"))`,message="header names must be HTTP tokens (RFC 9110): one or more letters, digits and !#$%&'*+-.^_|~ or a backtick"
	// +kubebuilder:validation:XValidation:rule=`self.all(name, !name.matches("(?i)^(authorization|proxy-authorization|cookie|x-api-key)$|token|secret|password|api-key"))`,message="a credential header (Authorization, Proxy-Authorization, Cookie, X-Api-Key, or a name with token, secret, password or api-key) must not be a static header: the receiver config is a plain ConfigMap that the namespace's view role reads; send it from a Secret with headersFrom"
	// +optional
	Headers map[string]HTTPHeaderValue `json:"headers,omitempty"`
	// HeadersFrom take header values from Secret keys, such as an Authorization header.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	// +optional
	HeadersFrom []HeaderFromSecret `json:"headersFrom,omitempty"`
	// Format of the body: segment (the event as received) or cloudevents (binary mode).
	// +kubebuilder:default=segment
	// +optional
	Format HTTPFormat `json:"format,omitempty"`
	// Concurrency bounds the requests in flight to this endpoint at once, over all webhook
	// requests. The default lets a 4000-event batch reach an endpoint 20 ms away, one request
	// per event, in well under a second.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	// +kubebuilder:default=128
	// +optional
	Concurrency int32 `json:"concurrency,omitempty"`
	// Batch sends events as JSON arrays, Segment's own batch shape (so a receiver can feed
	// another), with an Idempotency-Key derived from the messageIds of each array.
	// +optional
	Batch *HTTPBatch `json:"batch,omitempty"`
}

// HTTPHeaderValue is the value of a static header: text without control characters (a tab is
// allowed), which the HTTP client would refuse on every request.
// +kubebuilder:validation:MaxLength=4096
// +kubebuilder:validation:XValidation:rule=`!self.matches(r"[\x00-\x08\x0a-\x1f\x7f]")`,message="header values must not hold control characters such as a line break"
type HTTPHeaderValue string

// HTTPBatch bounds one array request; an event larger than maxBytes is sent alone.
type HTTPBatch struct {
	// MaxEvents in one array.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4000
	// +kubebuilder:default=500
	// +optional
	MaxEvents int32 `json:"maxEvents,omitempty"`
	// MaxBytes of one array.
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=134217728
	// +kubebuilder:default=1048576
	// +optional
	MaxBytes int64 `json:"maxBytes,omitempty"`
}

// HeaderFromSecret is a header whose value is read from a Secret key.
type HeaderFromSecret struct {
	// Name of the header.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
	Name string `json:"name"`
	// SecretKeyRef holds the header value.
	SecretKeyRef SecretKeyRef `json:"secretKeyRef"`
}

// KafkaKey selects the record key.
// +kubebuilder:validation:Enum=messageId;userId
type KafkaKey string

const (
	// KafkaKeyMessageID keys records by the event's messageId.
	KafkaKeyMessageID KafkaKey = "messageId"
	// KafkaKeyUserID keys records by userId (per-user ordering); events without a userId fall
	// back to anonymousId, then to messageId.
	KafkaKeyUserID KafkaKey = "userId"
)

// KafkaCompression is the codec of produced record batches.
// +kubebuilder:validation:Enum=none;gzip;snappy;lz4;zstd
type KafkaCompression string

// KafkaSASLMechanism is a SASL mechanism for Kafka.
// +kubebuilder:validation:Enum=PLAIN;SCRAM-SHA-256;SCRAM-SHA-512
type KafkaSASLMechanism string

// KafkaTarget produces each event as one record (value: the event JSON) with an idempotent
// producer and acks=all. Records carry the headers segment-type, segment-message-id and
// content-type.
type KafkaTarget struct {
	// Brokers to bootstrap from, host:port.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=261
	// +kubebuilder:validation:XValidation:rule="self.all(b, b.matches('^([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|[[][0-9A-Fa-f:.]+[]]):[0-9]{1,5}$'))",message="each broker must be host:port"
	// +listType=atomic
	Brokers []string `json:"brokers"`
	// Topic the records are produced to. It must exist unless the brokers create topics
	// automatically.
	// +kubebuilder:validation:MaxLength=249
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-zA-Z0-9._-]+$') && self != '.' && self != '..'",message="topic must be 1-249 characters of [a-zA-Z0-9._-] and not . or .."
	Topic string `json:"topic"`
	// Key of each record: messageId, or userId for per-user ordering (events without a userId
	// use their anonymousId, then their messageId).
	// +kubebuilder:default=messageId
	// +optional
	Key KafkaKey `json:"key,omitempty"`
	// Compression of record batches: none, gzip, snappy, lz4 or zstd.
	// +kubebuilder:default=snappy
	// +optional
	Compression KafkaCompression `json:"compression,omitempty"`
	// TLS, when set (even empty), connects over TLS; the system roots verify the brokers unless a
	// CA is given.
	// +optional
	TLS *TargetTLS `json:"tls,omitempty"`
	// SASL authenticates to the brokers.
	// +optional
	SASL *KafkaSASL `json:"sasl,omitempty"`
}

// KafkaSASL authenticates to Kafka with a username and password from Secret keys.
// +kubebuilder:validation:XValidation:rule="has(self.usernameSecretRef) && has(self.passwordSecretRef)",message="sasl needs both usernameSecretRef and passwordSecretRef"
type KafkaSASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism KafkaSASLMechanism `json:"mechanism"`
	// UsernameSecretRef holds the username.
	// +optional
	UsernameSecretRef *SecretKeyRef `json:"usernameSecretRef,omitempty"`
	// PasswordSecretRef holds the password.
	// +optional
	PasswordSecretRef *SecretKeyRef `json:"passwordSecretRef,omitempty"`
}

// TargetTLS configures TLS towards a broker. Certificate verification cannot be turned off.
// +kubebuilder:validation:XValidation:rule="has(self.certSecretRef) == has(self.keySecretRef)",message="certSecretRef and keySecretRef must be set together"
type TargetTLS struct {
	// CASecretRef holds PEM CA certificates that verify the server; the system roots otherwise.
	// +optional
	CASecretRef *SecretKeyRef `json:"caSecretRef,omitempty"`
	// CertSecretRef holds a PEM client certificate, for mutual TLS.
	// +optional
	CertSecretRef *SecretKeyRef `json:"certSecretRef,omitempty"`
	// KeySecretRef holds the PEM private key of the client certificate.
	// +optional
	KeySecretRef *SecretKeyRef `json:"keySecretRef,omitempty"`
}

// NATSTarget publishes each event to NATS JetStream with the Nats-Msg-Id header set to the
// event's messageId, so the stream's duplicate window drops Segment's retries. An event counts
// as delivered only when the stream acknowledges it.
// +kubebuilder:validation:XValidation:rule="[has(self.credentialsSecretRef), has(self.tokenSecretRef), has(self.usernameSecretRef) || has(self.passwordSecretRef)].filter(k, k).size() <= 1",message="set at most one of credentialsSecretRef, tokenSecretRef, or usernameSecretRef with passwordSecretRef"
// +kubebuilder:validation:XValidation:rule="has(self.usernameSecretRef) == has(self.passwordSecretRef)",message="usernameSecretRef and passwordSecretRef must be set together"
type NATSTarget struct {
	// URLs of the NATS servers, nats:// or tls://, without credentials.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.all(u, isURL(u) && url(u).getScheme() in ['nats', 'tls'] && url(u).getHostname() != '' && !u.contains('@'))",message="urls must be nats:// or tls:// URLs with a host and without credentials"
	// +listType=atomic
	URLs []string `json:"urls"`
	// Subject to publish to, such as "segment.events" or "segment.{type}": {type} is replaced by
	// the event type (characters other than letters, digits, _ and - become _).
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.matches('^([A-Za-z0-9_-]|[{]type[}])+([.]([A-Za-z0-9_-]|[{]type[}])+)*$')",message="subject must be dot-separated tokens of [A-Za-z0-9_-], with {type} the only placeholder"
	Subject string `json:"subject"`
	// Stream, when set, must be the stream that stores the subject; publishing fails otherwise.
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9_-]+$')",message="stream must be characters of [A-Za-z0-9_-]"
	// +optional
	Stream string `json:"stream,omitempty"`
	// CredentialsSecretRef holds a NATS credentials file (user JWT and NKey seed).
	// +optional
	CredentialsSecretRef *SecretKeyRef `json:"credentialsSecretRef,omitempty"`
	// TokenSecretRef holds an authentication token.
	// +optional
	TokenSecretRef *SecretKeyRef `json:"tokenSecretRef,omitempty"`
	// UsernameSecretRef holds the username, with passwordSecretRef.
	// +optional
	UsernameSecretRef *SecretKeyRef `json:"usernameSecretRef,omitempty"`
	// PasswordSecretRef holds the password, with usernameSecretRef.
	// +optional
	PasswordSecretRef *SecretKeyRef `json:"passwordSecretRef,omitempty"`
	// TLS, when set (even empty), connects over TLS; the system roots verify the servers unless
	// a CA is given.
	// +optional
	TLS *TargetTLS `json:"tls,omitempty"`
}

// Delivery tunes retries and deduplication towards the targets.
// +kubebuilder:validation:XValidation:rule="!has(self.initialBackoff) || !has(self.maxBackoff) || duration(self.initialBackoff) <= duration(self.maxBackoff)",message="initialBackoff must not exceed maxBackoff"
type Delivery struct {
	// Budget is how long one request may take, retries included. Segment times out after 5s, so
	// it must stay below that.
	// +kubebuilder:default="3s"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s') && duration(self) < duration('5s')",message="budget must be above 0s and below 5s (Segment's timeout)"
	// +optional
	Budget *metav1.Duration `json:"budget,omitempty"`
	// MaxAttempts per target and event within the budget.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=20
	// +kubebuilder:default=5
	// +optional
	MaxAttempts int32 `json:"maxAttempts,omitempty"`
	// InitialBackoff before the first retry; it doubles, with jitter, up to maxBackoff.
	// +kubebuilder:default="100ms"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="initialBackoff must be above 0s"
	// +optional
	InitialBackoff *metav1.Duration `json:"initialBackoff,omitempty"`
	// MaxBackoff caps the wait between retries.
	// +kubebuilder:default="1s"
	// +optional
	MaxBackoff *metav1.Duration `json:"maxBackoff,omitempty"`
	// DedupeWindow is how long each target remembers the messageIds it accepted, so that a
	// Segment retry is not sent again to targets that already have it. Segment retries for four
	// hours. The memory cannot be turned off: 0s is refused.
	// +kubebuilder:default="4h15m"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s') && duration(self) <= duration('48h')",message="dedupeWindow must be above 0s and at most 48h"
	// +optional
	DedupeWindow *metav1.Duration `json:"dedupeWindow,omitempty"`
}

// Limits bound the size of one request.
type Limits struct {
	// MaxEvents in one request (an Actions batch). Segment sends at most 4000.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4000
	// +kubebuilder:default=4000
	// +optional
	MaxEvents int32 `json:"maxEvents,omitempty"`
	// MaxBodyBytes of one request; larger requests are refused with 413.
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=134217728
	// +kubebuilder:default=16777216
	// +optional
	MaxBodyBytes int64 `json:"maxBodyBytes,omitempty"`
}

// Autoscaling creates a HorizontalPodAutoscaler on CPU utilisation.
// +kubebuilder:validation:XValidation:rule="self.minReplicas <= self.maxReplicas",message="minReplicas must not exceed maxReplicas"
type Autoscaling struct {
	// MinReplicas of the receiver.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=2
	// +optional
	MinReplicas int32 `json:"minReplicas,omitempty"`
	// MaxReplicas of the receiver.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	MaxReplicas int32 `json:"maxReplicas"`
	// TargetCPUUtilizationPercentage of the CPU request.
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=75
	// +optional
	TargetCPUUtilizationPercentage int32 `json:"targetCPUUtilizationPercentage,omitempty"`
}

// ServiceSpec shapes the receiver's Service.
type ServiceSpec struct {
	// Type of the Service.
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	// +kubebuilder:default=ClusterIP
	// +optional
	Type corev1.ServiceType `json:"type,omitempty"`
	// Port the Service listens on.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:default=80
	// +optional
	Port int32 `json:"port,omitempty"`
	// Annotations added to the Service, for cloud load balancers for example.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// IngressSpec exposes the receiver through an Ingress.
type IngressSpec struct {
	// ClassName of the IngressClass; the cluster default when empty.
	// +optional
	ClassName *string `json:"className,omitempty"`
	// Host Segment sends to, such as segment.example.com.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Host string `json:"host"`
	// Path of the webhook; the receiver serves it too.
	// +kubebuilder:default="/webhook"
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^/[-A-Za-z0-9._~/]*$`
	// +optional
	Path string `json:"path,omitempty"`
	// TLSSecretName holds the certificate for host; the URL is https when set.
	// +optional
	TLSSecretName string `json:"tlsSecretName,omitempty"`
	// Annotations added to the Ingress, for cert-manager or the controller for example.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// PodOverrides shape the receiver pods.
type PodOverrides struct {
	// NodeSelector of the receiver pods.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// Tolerations of the receiver pods.
	// +optional
	// +listType=atomic
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// Affinity of the receiver pods.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`
	// PriorityClassName of the receiver pods.
	// +optional
	PriorityClassName string `json:"priorityClassName,omitempty"`
	// Labels added to the receiver pods; they cannot replace the operator's own labels.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations added to the receiver pods. AppArmor and seccomp annotations are refused: the
	// receiver always runs under the restricted Pod Security Standard.
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('container.apparmor.security.beta.kubernetes.io/') && !k.startsWith('seccomp.security.alpha.kubernetes.io/'))",message="pod annotations may not set AppArmor or seccomp profiles: the receiver runs under the restricted Pod Security Standard"
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// TrackingPlan references the plan documents and says what to do with events that break them.
type TrackingPlan struct {
	// ConfigMapRef names a ConfigMap in the SegmentWebhook's namespace whose keys are plan
	// documents: {"$defs": ..., "track": {"<event name>": <schema>}, "identify", "group", "page",
	// "screen": <schema>, "context": <schema>}. Documents are merged.
	ConfigMapRef ConfigMapReference `json:"configMapRef"`
	// Keys selects the ConfigMap's keys that are plan documents; all of them when empty.
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=240
	// +kubebuilder:validation:items:Pattern=`^[-._a-zA-Z0-9]+$`
	// +listType=set
	// +optional
	Keys []string `json:"keys,omitempty"`
	// UnplannedEvents says what happens to track events the plan does not name: Allow (forward)
	// or Block (drop and count).
	// +kubebuilder:validation:Enum=Allow;Block
	// +kubebuilder:default=Allow
	// +optional
	UnplannedEvents string `json:"unplannedEvents,omitempty"`
	// OnViolation says what happens to an event that breaks its schema: Forward (count it and
	// mark it with a violation header or attribute), OmitProperties (drop the properties the
	// plan does not allow, then forward), DeadLetter (send it to spec.deadLetter with the JSON
	// pointer and keyword of each violation) or Block (drop and count).
	// +kubebuilder:validation:Enum=Forward;OmitProperties;DeadLetter;Block
	// +kubebuilder:default=Forward
	// +optional
	OnViolation string `json:"onViolation,omitempty"`
}

// ConfigMapReference names a ConfigMap in the same namespace.
type ConfigMapReference struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// TrackingPlanStatus describes the plan the receivers were last given.
type TrackingPlanStatus struct {
	// Events is the number of planned track events.
	Events int32 `json:"events"`
	// Hash identifies the plan's content.
	Hash string `json:"hash"`
}

// SegmentWebhookStatus is the observed state of a SegmentWebhook.
type SegmentWebhookStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready, Reconciling and Stalled (kstatus conventions), SecretsResolved, Available,
	// and finer ones such as HostsClaimed and SignatureCoverage.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// URL to configure in the Segment destination: the Ingress, or the address a LoadBalancer
	// Service was given. Empty while the receiver is not reachable from outside the cluster.
	// +optional
	URL string `json:"url,omitempty"`
	// Address is where the receiver is reachable inside the cluster (Knative's Addressable).
	// +optional
	Address *Addressable `json:"address,omitempty"`
	// Replicas of the receiver Deployment.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`
	// ReadyReplicas of the receiver Deployment.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`
	// TrackingPlan is the plan the receivers were last given; it stays while a changed plan does
	// not compile.
	// +optional
	TrackingPlan *TrackingPlanStatus `json:"trackingPlan,omitempty"`
	// HostClaims are the host+path pairs granted to this SegmentWebhook, with when each was
	// granted. A granted claim belongs to it, even against an older SegmentWebhook, until its
	// spec no longer claims it: an Ingress or HTTPRoute deleted by hand comes back.
	// +listType=map
	// +listMapKey=claim
	// +kubebuilder:validation:MaxItems=16
	// +optional
	HostClaims []HostClaim `json:"hostClaims,omitempty"`
}

// HostClaim records a host+path pair granted to a SegmentWebhook.
type HostClaim struct {
	// Claim is the host and path, such as "segment.example.com/webhook".
	// +kubebuilder:validation:MaxLength=512
	Claim string `json:"claim"`
	// GrantedAt is when the operator first gave this SegmentWebhook the claim's Ingress or
	// HTTPRoute; of two claims of the same host and path, the earlier grant wins.
	GrantedAt metav1.MicroTime `json:"grantedAt"`
}

// Addressable is an in-cluster address.
type Addressable struct {
	// URL of the receiver's webhook path through its Service.
	URL string `json:"url"`
}

// Condition types and reasons. Ready, Reconciling and Stalled follow the kstatus conventions:
// Reconciling and Stalled are present only while True.
const (
	ConditionReady           = "Ready"
	ConditionReconciling     = "Reconciling"
	ConditionStalled         = "Stalled"
	ConditionSecretsResolved = "SecretsResolved"
	ConditionAvailable       = "Available"

	ReasonSecretNotFound           = "SecretNotFound"
	ReasonSecretKeyNotFound        = "SecretKeyNotFound"
	ReasonSecretsResolved          = "SecretsResolved"
	ReasonInvalidConfig            = "InvalidConfig"
	ReasonChildConflict            = "ChildConflict"
	ReasonInvalidChild             = "InvalidChild"
	ReasonReconcileFailed          = "ReconcileFailed"
	ReasonProgressingWithRetry     = "ProgressingWithRetry"
	ReasonDeploymentAvailable      = "DeploymentAvailable"
	ReasonDeploymentProgressing    = "DeploymentProgressing"
	ReasonProgressDeadlineExceeded = "ProgressDeadlineExceeded"
	ReasonReady                    = "Ready"
	// ReasonImageNotAllowed: spec.image is outside the operator's --allowed-receiver-images.
	ReasonImageNotAllowed = "ImageNotAllowed"
	// ReasonSchedulingNotAllowed: spec.pod sets scheduling overrides while the operator runs
	// with --allow-scheduling-overrides=false.
	ReasonSchedulingNotAllowed = "SchedulingNotAllowed"
)

// Signature coverage condition and reasons.
const (
	// ConditionSignatureCoverage is present in authentication mode HMAC. It is informational, as
	// kstatus readers expect of a condition other than Ready, Reconciling and Stalled: False says
	// the receiver accepts signatures that leave part of a request unsigned, not that it does not
	// serve.
	ConditionSignatureCoverage = "SignatureCoverage"

	// ReasonFirstElementOnly: signature Any accepts an X-Signature over a batch's first element.
	ReasonFirstElementOnly = "FirstElementOnly"
	// ReasonFullBody: signature FullBody accepts only signatures over the whole body.
	ReasonFullBody = "FullBody"
)

// Tracking plan condition and reasons.
const (
	// ConditionTrackingPlanCompiled is present when spec.trackingPlan is set.
	ConditionTrackingPlanCompiled = "TrackingPlanCompiled"

	ReasonTrackingPlanCompiled = "TrackingPlanCompiled"
	ReasonTrackingPlanInvalid  = "TrackingPlanInvalid"
	ReasonTrackingPlanNotFound = "TrackingPlanNotFound"
)

// SegmentWebhook runs a Segment webhook receiver that verifies, validates and forwards events.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=swh,categories=segment
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.status.url`
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.status.replicas`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// Deleting the CRD deletes every team's SegmentWebhooks and, through owner references, their
// receivers: Helm, Flux and Argo CD are told never to delete or prune it.
// +kubebuilder:metadata:annotations="helm.sh/resource-policy=keep"
// +kubebuilder:metadata:annotations="kustomize.toolkit.fluxcd.io/prune=disabled"
// +kubebuilder:metadata:annotations="argocd.argoproj.io/sync-options=Prune=false,Delete=false"
// +kubebuilder:metadata:labels="app.kubernetes.io/component=crd"
// The children are named <name>-receiver, and a Service name must be a DNS-1035 label (at most
// 63 characters, starting with a letter): a name that cannot give one is refused up front.
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter, no dots): the receiver Service is named <name>-receiver"
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 54",message="metadata.name must be at most 54 characters: the receiver Service is named <name>-receiver, and a Service name has at most 63"
type SegmentWebhook struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SegmentWebhookSpec   `json:"spec,omitempty"`
	Status SegmentWebhookStatus `json:"status,omitempty"`
}

// SegmentWebhookList contains a list of SegmentWebhook.
// +kubebuilder:object:root=true
type SegmentWebhookList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SegmentWebhook `json:"items"`
}

func init() {
	SchemeBuilder.Register(func(s *runtime.Scheme) error {
		s.AddKnownTypes(GroupVersion, &SegmentWebhook{}, &SegmentWebhookList{})
		return nil
	})
}

// WebhookPath is the path Segment posts to and the receiver serves: the Ingress's or the
// HTTPRoute's, so that they always agree, else the receiver's default.
func (s *SegmentWebhookSpec) WebhookPath() string {
	switch {
	case s.Ingress != nil && s.Ingress.Path != "":
		return s.Ingress.Path
	case s.Gateway != nil && s.Gateway.Path != "":
		return s.Gateway.Path
	}
	return config.DefaultPath
}

// SecretNames lists every Secret the spec references, for the Secret watch's field index.
func (s *SegmentWebhookSpec) SecretNames() []string {
	refs := s.SecretKeyRefs()
	names := make([]string, 0, len(refs))
	seen := map[string]bool{}
	for _, r := range refs {
		if !seen[r.Name] {
			seen[r.Name] = true
			names = append(names, r.Name)
		}
	}
	return names
}

// SecretKeyRefs lists every Secret key the spec references, in spec order.
func (s *SegmentWebhookSpec) SecretKeyRefs() []SecretKeyRef {
	refs := append([]SecretKeyRef(nil), s.SecretRefs...)
	if s.Authentication.BearerTokenSecretRef != nil {
		refs = append(refs, *s.Authentication.BearerTokenSecretRef)
	}
	add := func(rs ...*SecretKeyRef) {
		for _, r := range rs {
			if r != nil {
				refs = append(refs, *r)
			}
		}
	}
	addTLS := func(t *TargetTLS) {
		if t != nil {
			add(t.CASecretRef, t.CertSecretRef, t.KeySecretRef)
		}
	}
	addKinds := func(h *HTTPTarget, k *KafkaTarget, n *NATSTarget) {
		if h != nil {
			for _, hf := range h.HeadersFrom {
				refs = append(refs, hf.SecretKeyRef)
			}
		}
		if k != nil {
			addTLS(k.TLS)
			if k.SASL != nil {
				add(k.SASL.UsernameSecretRef, k.SASL.PasswordSecretRef)
			}
		}
		if n != nil {
			add(n.CredentialsSecretRef, n.TokenSecretRef, n.UsernameSecretRef, n.PasswordSecretRef)
			addTLS(n.TLS)
		}
	}
	for _, t := range s.Targets {
		addKinds(t.HTTP, t.Kafka, t.NATS)
	}
	if d := s.DeadLetter; d != nil {
		addKinds(d.HTTP, d.Kafka, d.NATS)
	}
	return refs
}
