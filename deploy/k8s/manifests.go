// Package k8s renders Herald's Kubernetes manifests — the kustomize base,
// components and overlays in this directory — and checks them offline, the
// way an API server with strict field validation and the controllers that
// act on them would: every object decodes into its typed Go API with no
// unknown or duplicate field, and the objects agree with each other and with
// the code (selectors, ports, principals, Pub/Sub subscriptions, the
// services' configuration, the skaffold artifacts).
//
// The Kubernetes and Istio objects decode into k8s.io/api and
// istio.io/client-go types; Istio specs are protobuf messages and are decoded
// again with protojson, which, unlike the generated UnmarshalJSON, rejects
// unknown fields. Flagger and KEDA publish no Go API module that builds here
// without pulling in their controllers, so crd.go declares the subset of
// their types that Herald uses; a field outside that subset is rejected just
// as a misspelt one is.
package k8s

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	istionetworking "istio.io/client-go/pkg/apis/networking/v1"
	istiosecurity "istio.io/client-go/pkg/apis/security/v1"
	istiotelemetry "istio.io/client-go/pkg/apis/telemetry/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	sigsyaml "sigs.k8s.io/yaml"
)

// Object is one decoded manifest.
type Object struct {
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
	// Value points to the typed object, e.g. *appsv1.Deployment.
	Value any
}

// ID names the object for messages: Kind/namespace/name.
func (o Object) ID() string { return o.Kind + "/" + o.Namespace + "/" + o.Name }

// kinds lists every apiVersion/kind Herald ships and the type it must decode
// into. Anything else is rejected: nothing goes out unchecked.
var kinds = map[string]func() any{
	"v1/Namespace":                               func() any { return new(corev1.Namespace) },
	"v1/ServiceAccount":                          func() any { return new(corev1.ServiceAccount) },
	"v1/Service":                                 func() any { return new(corev1.Service) },
	"v1/ConfigMap":                               func() any { return new(corev1.ConfigMap) },
	"apps/v1/Deployment":                         func() any { return new(appsv1.Deployment) },
	"batch/v1/Job":                               func() any { return new(batchv1.Job) },
	"policy/v1/PodDisruptionBudget":              func() any { return new(policyv1.PodDisruptionBudget) },
	"autoscaling/v2/HorizontalPodAutoscaler":     func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"networking.istio.io/v1/Gateway":             func() any { return new(istionetworking.Gateway) },
	"networking.istio.io/v1/VirtualService":      func() any { return new(istionetworking.VirtualService) },
	"networking.istio.io/v1/DestinationRule":     func() any { return new(istionetworking.DestinationRule) },
	"networking.istio.io/v1/ServiceEntry":        func() any { return new(istionetworking.ServiceEntry) },
	"networking.istio.io/v1/Sidecar":             func() any { return new(istionetworking.Sidecar) },
	"security.istio.io/v1/AuthorizationPolicy":   func() any { return new(istiosecurity.AuthorizationPolicy) },
	"security.istio.io/v1/PeerAuthentication":    func() any { return new(istiosecurity.PeerAuthentication) },
	"security.istio.io/v1/RequestAuthentication": func() any { return new(istiosecurity.RequestAuthentication) },
	"telemetry.istio.io/v1/Telemetry":            func() any { return new(istiotelemetry.Telemetry) },
	"flagger.app/v1beta1/Canary":                 func() any { return new(Canary) },
	"flagger.app/v1beta1/MetricTemplate":         func() any { return new(MetricTemplate) },
	"keda.sh/v1alpha1/ScaledObject":              func() any { return new(ScaledObject) },
	"keda.sh/v1alpha1/TriggerAuthentication":     func() any { return new(TriggerAuthentication) },
}

// Overlays lists the overlay directories under dir/overlays, by name.
func Overlays(dir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(dir, "overlays"))
	if err != nil {
		return nil, fmt.Errorf("list overlays: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// Render builds the kustomization at dir with the kustomize Go API (what
// `kubectl kustomize` and skaffold run) and returns the YAML stream.
func Render(dir string) ([]byte, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return out, nil
}

// Decode splits a YAML stream into documents and decodes each strictly.
// It returns every error, not just the first.
func Decode(stream []byte) ([]Object, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	var objs []Object
	var errs []error
	for i := 0; ; i++ {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read document %d: %w", i, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 || isComment(doc) {
			continue
		}
		o, err := DecodeDocument(doc)
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", i, err))
			continue
		}
		objs = append(objs, o)
	}
	return objs, errors.Join(errs...)
}

func isComment(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			return false
		}
	}
	return true
}

// DecodeDocument decodes one YAML document into the type its apiVersion and
// kind name, rejecting unknown fields, duplicate fields and fields spelt in
// another case (the API server's strict field validation).
func DecodeDocument(doc []byte) (Object, error) {
	js, err := sigsyaml.YAMLToJSONStrict(doc)
	if err != nil {
		return Object{}, fmt.Errorf("yaml: %w", err)
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
		Spec json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return Object{}, fmt.Errorf("read apiVersion and kind: %w", err)
	}
	o := Object{APIVersion: head.APIVersion, Kind: head.Kind, Namespace: head.Metadata.Namespace, Name: head.Metadata.Name}
	newValue, ok := kinds[head.APIVersion+"/"+head.Kind]
	if !ok {
		return o, fmt.Errorf("%s: apiVersion %q kind %q is not one Herald ships (add its type to kinds)", o.ID(), head.APIVersion, head.Kind)
	}
	if o.Name == "" {
		return o, fmt.Errorf("%s: metadata.name is empty", o.ID())
	}
	o.Value = newValue()
	if err := strictJSON(js, o.Value); err != nil {
		return o, fmt.Errorf("%s: %w", o.ID(), err)
	}
	// Istio's generated UnmarshalJSON for specs ignores unknown fields; the
	// spec is a protobuf message, and protojson does not.
	if spec, ok := istioSpec(o.Value); ok && len(head.Spec) > 0 {
		if err := protojson.Unmarshal(head.Spec, spec); err != nil {
			return o, fmt.Errorf("%s: spec: %w", o.ID(), err)
		}
	}
	if v, ok := o.Value.(interface{ validate() error }); ok {
		if err := v.validate(); err != nil {
			return o, fmt.Errorf("%s: %w", o.ID(), err)
		}
	}
	return o, nil
}

// strictJSON decodes js into v as the API server does with
// fieldValidation=Strict: case-sensitive, no unknown or duplicate fields.
func strictJSON(js []byte, v any) error {
	strict, err := sigsjson.UnmarshalStrict(js, v)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// istioSpec returns the protobuf spec of an istio.io/client-go object.
func istioSpec(v any) (proto.Message, bool) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return nil, false
	}
	f := rv.Elem().FieldByName("Spec")
	if !f.IsValid() || !f.CanAddr() {
		return nil, false
	}
	m, ok := f.Addr().Interface().(proto.Message)
	return m, ok
}

// Of returns the objects of type T, e.g. Of[*appsv1.Deployment](objs).
func Of[T any](objs []Object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.Value.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// kindsIn lists the kinds present, sorted, for messages.
func kindsIn(objs []Object) []string {
	var ks []string
	for _, o := range objs {
		if !slices.Contains(ks, o.Kind) {
			ks = append(ks, o.Kind)
		}
	}
	slices.Sort(ks)
	return ks
}
