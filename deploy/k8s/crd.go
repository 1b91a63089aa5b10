package k8s

import (
	"errors"
	"fmt"
	"slices"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The types below are the subset of Flagger's flagger.app/v1beta1 and KEDA's
// keda.sh/v1alpha1 APIs that Herald's manifests use, with their field names
// and JSON shapes as those projects' CRDs define them. Decoding is strict, so
// a field that is misspelt — or valid upstream but not declared here — is
// rejected; declare it here before using it. validate adds the checks the
// CRDs' schemas and the controllers make that a type cannot express.

// Canary is Flagger's release of one Deployment.
type Canary struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              CanarySpec `json:"spec"`
}

// CanarySpec says what Flagger releases and how it judges a release.
type CanarySpec struct {
	// Provider is the traffic router: istio shifts weight through a
	// VirtualService; kubernetes runs a blue/green analysis without routing.
	Provider                string          `json:"provider,omitempty"`
	MetricsServer           string          `json:"metricsServer,omitempty"`
	TargetRef               ObjectRef       `json:"targetRef"`
	AutoscalerRef           *ObjectRef      `json:"autoscalerRef,omitempty"`
	Service                 CanaryService   `json:"service"`
	Analysis                *CanaryAnalysis `json:"analysis,omitempty"`
	ProgressDeadlineSeconds *int32          `json:"progressDeadlineSeconds,omitempty"`
	SkipAnalysis            bool            `json:"skipAnalysis,omitempty"`
	RevertOnDeletion        bool            `json:"revertOnDeletion,omitempty"`
	Suspend                 bool            `json:"suspend,omitempty"`
}

// ObjectRef names an object in the Canary's namespace.
type ObjectRef struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Name       string `json:"name"`
}

// CanaryService is the Service (and, with Istio, the VirtualService and
// DestinationRules) that Flagger generates for the target.
type CanaryService struct {
	Name          string              `json:"name,omitempty"`
	Port          int32               `json:"port"`
	PortName      string              `json:"portName,omitempty"`
	TargetPort    intstr.IntOrString  `json:"targetPort,omitempty"`
	AppProtocol   string              `json:"appProtocol,omitempty"`
	PortDiscovery bool                `json:"portDiscovery,omitempty"`
	Timeout       string              `json:"timeout,omitempty"`
	Gateways      []string            `json:"gateways,omitempty"`
	Hosts         []string            `json:"hosts,omitempty"`
	Match         []HTTPMatchRequest  `json:"match,omitempty"`
	Retries       *HTTPRetry          `json:"retries,omitempty"`
	TrafficPolicy *TrafficPolicy      `json:"trafficPolicy,omitempty"`
	Headers       *HeaderManipulation `json:"headers,omitempty"`
}

// HTTPMatchRequest is the part of Istio's match that Herald routes on.
type HTTPMatchRequest struct {
	Name    string                 `json:"name,omitempty"`
	URI     *StringMatch           `json:"uri,omitempty"`
	Method  *StringMatch           `json:"method,omitempty"`
	Headers map[string]StringMatch `json:"headers,omitempty"`
}

// StringMatch matches exactly one way.
type StringMatch struct {
	Exact  string `json:"exact,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	Regex  string `json:"regex,omitempty"`
}

// HTTPRetry is Istio's retry policy.
type HTTPRetry struct {
	Attempts      int32  `json:"attempts"`
	PerTryTimeout string `json:"perTryTimeout,omitempty"`
	RetryOn       string `json:"retryOn,omitempty"`
}

// TrafficPolicy is the part of Istio's DestinationRule policy Herald sets.
type TrafficPolicy struct {
	TLS *struct {
		Mode string `json:"mode"`
	} `json:"tls,omitempty"`
}

// HeaderManipulation is Istio's request/response header manipulation.
type HeaderManipulation struct {
	Request  *HeaderOperations `json:"request,omitempty"`
	Response *HeaderOperations `json:"response,omitempty"`
}

// HeaderOperations sets, adds or removes headers.
type HeaderOperations struct {
	Set    map[string]string `json:"set,omitempty"`
	Add    map[string]string `json:"add,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

// CanaryAnalysis is the schedule and the checks of a release.
type CanaryAnalysis struct {
	Interval   string         `json:"interval"`
	Iterations int            `json:"iterations,omitempty"`
	MaxWeight  int            `json:"maxWeight,omitempty"`
	StepWeight int            `json:"stepWeight,omitempty"`
	Threshold  int            `json:"threshold"`
	Metrics    []CanaryMetric `json:"metrics,omitempty"`
}

// CanaryMetric is one check: a MetricTemplate's value must stay in range.
type CanaryMetric struct {
	Name              string            `json:"name"`
	Interval          string            `json:"interval,omitempty"`
	ThresholdRange    *ThresholdRange   `json:"thresholdRange,omitempty"`
	TemplateRef       *TemplateRef      `json:"templateRef,omitempty"`
	TemplateVariables map[string]string `json:"templateVariables,omitempty"`
}

// ThresholdRange bounds a metric; either side may be open.
type ThresholdRange struct {
	Min *float64 `json:"min,omitempty"`
	Max *float64 `json:"max,omitempty"`
}

// TemplateRef names a MetricTemplate.
type TemplateRef struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
}

func (c *Canary) validate() error {
	var errs []error
	s := c.Spec
	if !slices.Contains([]string{"istio", "kubernetes"}, s.Provider) {
		errs = append(errs, fmt.Errorf("spec.provider %q: Herald uses istio or kubernetes", s.Provider))
	}
	if s.TargetRef.Kind != "Deployment" || s.TargetRef.APIVersion != "apps/v1" || s.TargetRef.Name == "" {
		errs = append(errs, errors.New("spec.targetRef must name an apps/v1 Deployment"))
	}
	if s.Service.Port <= 0 {
		errs = append(errs, errors.New("spec.service.port is required"))
	}
	a := s.Analysis
	if a == nil {
		return errors.Join(append(errs, errors.New("spec.analysis is required"))...)
	}
	if _, err := time.ParseDuration(a.Interval); err != nil {
		errs = append(errs, fmt.Errorf("spec.analysis.interval: %w", err))
	}
	if a.Threshold < 1 {
		errs = append(errs, errors.New("spec.analysis.threshold must be at least 1"))
	}
	switch {
	case a.Iterations > 0 && (a.StepWeight > 0 || a.MaxWeight > 0):
		errs = append(errs, errors.New("spec.analysis: iterations (blue/green) and stepWeight/maxWeight (weighted) exclude each other"))
	case a.Iterations == 0 && (a.StepWeight <= 0 || a.MaxWeight <= 0 || a.MaxWeight > 100):
		errs = append(errs, errors.New("spec.analysis: a weighted canary needs stepWeight and maxWeight (1-100)"))
	case a.StepWeight > 0 && s.Provider != "istio":
		errs = append(errs, errors.New("spec.analysis: traffic weights need a router (provider istio)"))
	}
	if len(a.Metrics) == 0 {
		errs = append(errs, errors.New("spec.analysis.metrics: a release must be gated on at least one metric"))
	}
	for i, m := range a.Metrics {
		if m.TemplateRef == nil || m.TemplateRef.Name == "" {
			errs = append(errs, fmt.Errorf("spec.analysis.metrics[%d]: templateRef is required", i))
		}
		if m.ThresholdRange == nil || (m.ThresholdRange.Min == nil && m.ThresholdRange.Max == nil) {
			errs = append(errs, fmt.Errorf("spec.analysis.metrics[%d]: thresholdRange needs min or max", i))
		}
		if m.Interval != "" {
			if _, err := time.ParseDuration(m.Interval); err != nil {
				errs = append(errs, fmt.Errorf("spec.analysis.metrics[%d].interval: %w", i, err))
			}
		}
	}
	return errors.Join(errs...)
}

// MetricTemplate is a Flagger query with a provider.
type MetricTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              MetricTemplateSpec `json:"spec"`
}

// MetricTemplateSpec is the query and where to run it.
type MetricTemplateSpec struct {
	Provider MetricProvider `json:"provider"`
	Query    string         `json:"query"`
}

// MetricProvider is the metrics backend.
type MetricProvider struct {
	Type    string `json:"type"`
	Address string `json:"address,omitempty"`
}

func (m *MetricTemplate) validate() error {
	if m.Spec.Provider.Type != "prometheus" || m.Spec.Provider.Address == "" {
		return errors.New("spec.provider: Herald's templates query Prometheus at an address")
	}
	if m.Spec.Query == "" {
		return errors.New("spec.query is empty")
	}
	return nil
}

// ScaledObject is KEDA's autoscaler for one workload.
type ScaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ScaledObjectSpec `json:"spec"`
}

// ScaledObjectSpec is the target, the bounds and the triggers.
type ScaledObjectSpec struct {
	ScaleTargetRef   ScaleTarget      `json:"scaleTargetRef"`
	PollingInterval  *int32           `json:"pollingInterval,omitempty"`
	CooldownPeriod   *int32           `json:"cooldownPeriod,omitempty"`
	MinReplicaCount  *int32           `json:"minReplicaCount,omitempty"`
	MaxReplicaCount  *int32           `json:"maxReplicaCount,omitempty"`
	Fallback         *Fallback        `json:"fallback,omitempty"`
	Advanced         *AdvancedScaling `json:"advanced,omitempty"`
	Triggers         []ScaleTrigger   `json:"triggers"`
	IdleReplicaCount *int32           `json:"idleReplicaCount,omitempty"`
}

// ScaleTarget names the scaled workload (a Deployment unless kind says).
type ScaleTarget struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Name       string `json:"name"`
}

// Fallback is the size KEDA holds when a trigger keeps failing.
type Fallback struct {
	FailureThreshold int32  `json:"failureThreshold"`
	Replicas         int32  `json:"replicas"`
	Behavior         string `json:"behavior,omitempty"`
}

// AdvancedScaling tunes the HPA that KEDA creates.
type AdvancedScaling struct {
	HorizontalPodAutoscalerConfig *struct {
		Name     string                                         `json:"name,omitempty"`
		Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
	} `json:"horizontalPodAutoscalerConfig,omitempty"`
	RestoreToOriginalReplicaCount bool `json:"restoreToOriginalReplicaCount,omitempty"`
}

// ScaleTrigger is one scaler; Metadata is the scaler's own settings.
type ScaleTrigger struct {
	Type              string            `json:"type"`
	Name              string            `json:"name,omitempty"`
	Metadata          map[string]string `json:"metadata"`
	AuthenticationRef *AuthRef          `json:"authenticationRef,omitempty"`
	MetricType        string            `json:"metricType,omitempty"`
	UseCachedMetrics  bool              `json:"useCachedMetrics,omitempty"`
}

// AuthRef names a TriggerAuthentication (or ClusterTriggerAuthentication).
type AuthRef struct {
	Name string `json:"name"`
	Kind string `json:"kind,omitempty"`
}

// gcpPubsubKeys are the gcp-pubsub scaler's metadata settings Herald uses.
// The scaler ignores keys it does not know, so a misspelt key would silently
// fall back to a default; this list makes it an error instead.
var gcpPubsubKeys = []string{"subscriptionName", "mode", "value", "activationValue", "valueIfNull", "aggregation", "timeHorizon"}

func (s *ScaledObject) validate() error {
	var errs []error
	sp := s.Spec
	if sp.ScaleTargetRef.Name == "" || (sp.ScaleTargetRef.Kind != "" && sp.ScaleTargetRef.Kind != "Deployment") {
		errs = append(errs, errors.New("spec.scaleTargetRef must name a Deployment"))
	}
	if sp.MinReplicaCount == nil || sp.MaxReplicaCount == nil || *sp.MinReplicaCount < 1 || *sp.MaxReplicaCount < *sp.MinReplicaCount {
		errs = append(errs, errors.New("spec: minReplicaCount (at least 1: a worker never scales to zero mid-job) and maxReplicaCount >= it are required"))
	}
	if f := sp.Fallback; f != nil {
		if !slices.Contains([]string{"", "static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower"}, f.Behavior) {
			errs = append(errs, fmt.Errorf("spec.fallback.behavior %q is not one KEDA knows", f.Behavior))
		}
		if f.FailureThreshold < 1 || f.Replicas < 1 {
			errs = append(errs, errors.New("spec.fallback needs failureThreshold and replicas"))
		}
	}
	if len(sp.Triggers) == 0 {
		errs = append(errs, errors.New("spec.triggers is empty"))
	}
	for i, t := range sp.Triggers {
		if t.Type != "gcp-pubsub" {
			continue
		}
		for k := range t.Metadata {
			if !slices.Contains(gcpPubsubKeys, k) {
				errs = append(errs, fmt.Errorf("spec.triggers[%d].metadata.%s: not a gcp-pubsub setting Herald uses (%v)", i, k, gcpPubsubKeys))
			}
		}
		if t.Metadata["subscriptionName"] == "" {
			errs = append(errs, fmt.Errorf("spec.triggers[%d]: subscriptionName is required", i))
		}
		if m := t.Metadata["mode"]; m != "SubscriptionSize" && m != "OldestUnackedMessageAge" {
			errs = append(errs, fmt.Errorf("spec.triggers[%d].metadata.mode %q: want SubscriptionSize or OldestUnackedMessageAge", i, m))
		}
		if t.AuthenticationRef == nil {
			errs = append(errs, fmt.Errorf("spec.triggers[%d]: authenticationRef is required (Workload Identity, no key files)", i))
		}
	}
	return errors.Join(errs...)
}

// TriggerAuthentication tells KEDA how to authenticate its scalers.
type TriggerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		PodIdentity *struct {
			Provider string `json:"provider"`
		} `json:"podIdentity,omitempty"`
	} `json:"spec"`
}

func (t *TriggerAuthentication) validate() error {
	if t.Spec.PodIdentity == nil || t.Spec.PodIdentity.Provider != "gcp" {
		return errors.New("spec.podIdentity.provider must be gcp (Workload Identity)")
	}
	return nil
}
