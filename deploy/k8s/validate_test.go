package k8s

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	istiosecurityapi "istio.io/api/security/v1beta1"
	istionetworking "istio.io/client-go/pkg/apis/networking/v1"
	istiosecurity "istio.io/client-go/pkg/apis/security/v1"
	istiotelemetry "istio.io/client-go/pkg/apis/telemetry/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// root is the module root, two levels up from this package.
var root = filepath.Join("..", "..")

var rendered struct {
	once  sync.Once
	yaml  map[string][]byte
	err   error
	names []string
}

// renderAll builds every overlay once per test binary.
func renderAll(t *testing.T) map[string][]byte {
	t.Helper()
	rendered.once.Do(func() {
		rendered.names, rendered.err = Overlays(".")
		if rendered.err != nil {
			return
		}
		rendered.yaml = map[string][]byte{}
		for _, o := range rendered.names {
			var b []byte
			if b, rendered.err = Render(filepath.Join("overlays", o)); rendered.err != nil {
				return
			}
			rendered.yaml[o] = b
		}
	})
	if rendered.err != nil {
		t.Fatal(rendered.err)
	}
	if len(rendered.yaml) < 2 {
		t.Fatalf("overlays %v: want at least dev and prod", rendered.names)
	}
	return rendered.yaml
}

// decoded returns a fresh decoding of an overlay, which a test may change.
func decoded(t *testing.T, overlay string) []Object {
	t.Helper()
	objs, err := Decode(renderAll(t)[overlay])
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestOverlaysBuildAndDecodeStrictly(t *testing.T) {
	// What each overlay must contain, beyond the services themselves.
	want := map[string][]string{
		"dev":  {"AuthorizationPolicy", "ConfigMap", "Deployment", "Gateway", "HorizontalPodAutoscaler", "Namespace", "PeerAuthentication", "PodDisruptionBudget", "RequestAuthentication", "ScaledObject", "Service", "ServiceAccount", "ServiceEntry", "Sidecar", "Telemetry", "TriggerAuthentication", "VirtualService"},
		"prod": {"AuthorizationPolicy", "Canary", "ConfigMap", "Deployment", "Gateway", "HorizontalPodAutoscaler", "MetricTemplate", "Namespace", "PeerAuthentication", "PodDisruptionBudget", "RequestAuthentication", "ScaledObject", "Service", "ServiceAccount", "ServiceEntry", "Sidecar", "Telemetry", "TriggerAuthentication"},
	}
	for overlay, b := range renderAll(t) {
		t.Run(overlay, func(t *testing.T) {
			objs, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			got := kindsIn(objs)
			for _, k := range want[overlay] {
				if !slices.Contains(got, k) {
					t.Errorf("no %s in %s (has %v)", k, overlay, got)
				}
			}
			for _, o := range objs {
				if o.Kind != "Namespace" && o.Namespace != "herald" {
					t.Errorf("%s: namespace %q, want herald", o.ID(), o.Namespace)
				}
			}
		})
	}
}

func TestOverlaysAreConsistent(t *testing.T) {
	for overlay := range renderAll(t) {
		t.Run(overlay, func(t *testing.T) {
			if err := Check(decoded(t, overlay), root); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSkaffoldBuildsAndDeploysTheServices(t *testing.T) {
	s, err := LoadSkaffold(filepath.Join(root, "skaffold.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string][]Object{}
	for overlay := range renderAll(t) {
		objs[filepath.Join("deploy", "k8s", "overlays", overlay)] = decoded(t, overlay)
	}
	if err := CheckSkaffold(s, root, objs); err != nil {
		t.Fatal(err)
	}
}

// TestEdgePolicyFiles pins the contract with the local edge process, which
// reads these two files: one plain document each, of these kinds, with the
// issuer, audience, tenant claim and public paths Herald agreed on.
func TestEdgePolicyFiles(t *testing.T) {
	read := func(name string) Object {
		b, err := os.ReadFile(filepath.Join("components", "istio", name))
		if err != nil {
			t.Fatal(err)
		}
		objs, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) != 1 {
			t.Fatalf("%s: %d documents, want exactly one", name, len(objs))
		}
		return objs[0]
	}
	ra, ok := read("request-authentication.yaml").Value.(*istiosecurity.RequestAuthentication)
	if !ok {
		t.Fatal("request-authentication.yaml is not a RequestAuthentication")
	}
	rules := ra.Spec.GetJwtRules()
	if len(rules) != 1 {
		t.Fatalf("RequestAuthentication: %d jwtRules, want 1", len(rules))
	}
	r := rules[0]
	if r.GetIssuer() != "https://auth.herald.example" || !slices.Equal(r.GetAudiences(), []string{"herald-partner-api"}) || r.GetJwksUri() == "" {
		t.Errorf("RequestAuthentication: issuer %q audiences %v jwksUri %q", r.GetIssuer(), r.GetAudiences(), r.GetJwksUri())
	}
	claims := r.GetOutputClaimToHeaders()
	if !slices.ContainsFunc(claims, func(c *istiosecurityapi.ClaimToHeader) bool {
		return c.GetClaim() == "tenant" && strings.EqualFold(c.GetHeader(), "X-Tenant-ID")
	}) {
		t.Errorf("RequestAuthentication: outputClaimToHeaders %v, want tenant → X-Tenant-ID", claims)
	}

	ap, ok := read("authorization-policy.yaml").Value.(*istiosecurity.AuthorizationPolicy)
	if !ok {
		t.Fatal("authorization-policy.yaml is not an AuthorizationPolicy")
	}
	if ap.Spec.GetAction().String() != "ALLOW" {
		t.Fatalf("AuthorizationPolicy action %s, want ALLOW (deny what no rule allows)", ap.Spec.GetAction())
	}
	if !maps.Equal(ap.Spec.GetSelector().GetMatchLabels(), ra.Spec.GetSelector().GetMatchLabels()) {
		t.Error("the AuthorizationPolicy and the RequestAuthentication select different workloads")
	}
	var public []string
	for _, rule := range ap.Spec.GetRules() {
		var paths []string
		for _, to := range rule.GetTo() {
			paths = append(paths, to.GetOperation().GetPaths()...)
		}
		if len(rule.GetFrom()) == 0 {
			public = append(public, paths...)
			continue
		}
		for _, from := range rule.GetFrom() {
			if len(from.GetSource().GetRequestPrincipals()) == 0 {
				t.Errorf("rule for %v: a source without requestPrincipals lets token-less requests through", paths)
			}
		}
	}
	slices.Sort(public)
	if !slices.Equal(public, []string{"/u/*", "/v1/webhooks/*"}) {
		t.Errorf("paths open without a token: %v, want exactly /u/* and /v1/webhooks/*", public)
	}
}

// TestStrictDecodingRejects shows the decoder fails on what an API server
// with strict field validation (or the CRD's schema) would refuse.
func TestStrictDecodingRejects(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"unknown container field", `
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers: [{name: x, image: x, imagePullPolicyy: Always}]
`, "imagePullPolicyy"},
		{"field in the wrong case", `
apiVersion: v1
kind: Service
metadata: {name: x}
spec: {Selector: {a: b}}
`, "Selector"},
		{"duplicate field", `
apiVersion: v1
kind: ServiceAccount
metadata: {name: x, name: y}
`, "already set"},
		{"unknown field in an Istio spec", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: x}
spec:
  rules: [{from: [{source: {principal: [cluster.local/ns/a/sa/b]}}]}]
`, "principal"},
		{"unknown Istio enum value", `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: x}
spec: {mtls: {mode: STRICTEST}}
`, "STRICTEST"},
		{"unknown Flagger field", `
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: x}
spec:
  provider: kubernetes
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: x}
  service: {port: 8080}
  analysis: {interval: 1m, threshold: 1, iterations: 1, maxWieght: 50}
`, "maxWieght"},
		{"Flagger metric without a threshold", `
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: x}
spec:
  provider: kubernetes
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: x}
  service: {port: 8080}
  analysis: {interval: 1m, threshold: 1, iterations: 1, metrics: [{name: m, templateRef: {name: t}}]}
`, "thresholdRange"},
		{"unknown KEDA scaler setting", `
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: x}
spec:
  scaleTargetRef: {name: x}
  minReplicaCount: 1
  maxReplicaCount: 2
  triggers:
    - type: gcp-pubsub
      authenticationRef: {name: a}
      metadata: {subscriptionName: s, mode: SubscriptionSize, subscriptionSize: "5"}
`, "subscriptionSize"},
		{"a kind Herald does not ship", `
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: x}
`, "EnvoyFilter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decode: %v; want an error about %q", err, tc.want)
			}
		})
	}
	// The same documents, corrected, decode: the failures above are about
	// the one field, not the fixture.
	if _, err := Decode([]byte(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: x}
spec:
  rules: [{from: [{source: {principals: [cluster.local/ns/a/sa/b]}}]}]
`)); err != nil {
		t.Fatalf("corrected document: %v", err)
	}
}

// TestChecksCatch breaks one thing at a time in the rendered prod overlay
// and expects the cross-checks to notice.
func TestChecksCatch(t *testing.T) {
	deployment := func(objs []Object, name string) *appsv1.Deployment {
		for _, d := range Of[*appsv1.Deployment](objs) {
			if d.Name == name {
				return d
			}
		}
		t.Fatalf("no Deployment %s", name)
		return nil
	}
	for _, tc := range []struct {
		name    string
		overlay string
		breaks  func(objs []Object) []Object
		want    string
	}{
		{"Service selecting no pods", "dev", func(objs []Object) []Object {
			for _, s := range Of[*corev1.Service](objs) {
				if s.Name == "render" {
					s.Spec.Selector = map[string]string{"app.kubernetes.io/name": "renderer"}
				}
			}
			return objs
		}, "Service render: selector"},
		{"Service port no container has", "dev", func(objs []Object) []Object {
			deployment(objs, "ingest").Spec.Template.Spec.Containers[0].Ports[0].Name = "web"
			return objs
		}, "targetPort http is not a port"},
		{"policy selecting no pods", "prod", func(objs []Object) []Object {
			for _, p := range Of[*istiosecurity.AuthorizationPolicy](objs) {
				if p.Name == "ingest" {
					p.Spec.Selector.MatchLabels["app.kubernetes.io/component"] = "ingester"
				}
			}
			return objs
		}, "matches no pod template"},
		{"principal of no service account", "prod", func(objs []Object) []Object {
			for _, p := range Of[*istiosecurity.AuthorizationPolicy](objs) {
				if p.Name == "ingest" {
					p.Spec.Rules[0].From[0].Source.Principals = []string{"cluster.local/ns/istio-system/sa/istio-ingressgateway"}
				}
			}
			return objs
		}, "names no ServiceAccount"},
		{"worker scaled on another stage's subscription", "prod", func(objs []Object) []Object {
			for _, so := range Of[*ScaledObject](objs) {
				if so.Name == "render" {
					so.Spec.Triggers[0].Metadata["subscriptionName"] = "herald-dispatch-workers"
				}
			}
			return objs
		}, "render reads herald-render-workers"},
		{"subscription shared/messaging never creates", "prod", func(objs []Object) []Object {
			for _, so := range Of[*ScaledObject](objs) {
				if so.Name == "dispatch" {
					so.Spec.Triggers[1].Metadata["subscriptionName"] = "projects/herald-prod/subscriptions/herald-dispatch"
				}
			}
			return objs
		}, "not one shared/messaging creates"},
		{"grace period shorter than the drain", "prod", func(objs []Object) []Object {
			s := int64(20)
			deployment(objs, "dispatch").Spec.Template.Spec.TerminationGracePeriodSeconds = &s
			return objs
		}, "terminationGracePeriodSeconds must exceed"},
		{"GOMEMLIMIT not from the limit", "dev", func(objs []Object) []Object {
			c := &deployment(objs, "render").Spec.Template.Spec.Containers[0]
			for i := range c.Env {
				if c.Env[i].Name == "GOMEMLIMIT" {
					c.Env[i].ValueFrom.ResourceFieldRef.Resource = "requests.memory"
				}
			}
			return objs
		}, "GOMEMLIMIT must come from its own limits.memory"},
		{"writable root filesystem", "dev", func(objs []Object) []Object {
			f := false
			deployment(objs, "ingest").Spec.Template.Spec.InitContainers[0].SecurityContext.ReadOnlyRootFilesystem = &f
			return objs
		}, "container migrate: needs"},
		{"setting no service reads", "dev", func(objs []Object) []Object {
			for _, c := range Of[*corev1.ConfigMap](objs) {
				if strings.HasPrefix(c.Name, "recommend-") {
					c.Data["HERALD_STREAM"] = "8"
				}
			}
			return objs
		}, "HERALD_STREAM is not a setting recommend reads"},
		{"dispatch short of connections", "prod", func(objs []Object) []Object {
			for _, c := range Of[*corev1.ConfigMap](objs) {
				if strings.HasPrefix(c.Name, "dispatch-") {
					c.Data["HERALD_IN_FLIGHT"] = "8"
				}
			}
			return objs
		}, "HERALD_DB_MAX_CONNS 16 < HERALD_STREAMS x HERALD_IN_FLIGHT + 2 = 34"},
		{"render and ingest with different unsubscribe keys", "prod", func(objs []Object) []Object {
			c := &deployment(objs, "render").Spec.Template.Spec.Containers[0]
			for i := range c.Env {
				if c.Env[i].Name == "HERALD_UNSUBSCRIBE_SECRET" {
					c.Env[i].ValueFrom.SecretKeyRef.Name = "render-unsubscribe"
				}
			}
			return objs
		}, "must be one Secret key for every service"},
		{"edge admits a path ingest's policy refuses", "prod", func(objs []Object) []Object {
			for _, p := range Of[*istiosecurity.AuthorizationPolicy](objs) {
				if p.Name == "ingest" {
					p.Spec.Rules[0].To[0].Operation.Paths = []string{"/v1/*", "/u/*"}
				}
			}
			return objs
		}, "admits /ops at the gateway, but no policy lets the gateway"},
		{"edge admits a path no route reaches", "dev", func(objs []Object) []Object {
			for _, vs := range Of[*istionetworking.VirtualService](objs) {
				vs.Spec.Http[0].Match = vs.Spec.Http[0].Match[:2]
			}
			return objs
		}, "admits /ops at the gateway, but no route sends it to ingest"},
		{"replicas under an autoscaler", "prod", func(objs []Object) []Object {
			n := int32(3)
			deployment(objs, "ingest").Spec.Replicas = &n
			return objs
		}, "sets replicas although an autoscaler owns the count"},
		{"HPA for a Deployment that is not there", "dev", func(objs []Object) []Object {
			for _, h := range Of[*autoscalingv2.HorizontalPodAutoscaler](objs) {
				if h.Name == "ingest" {
					h.Spec.ScaleTargetRef.Name = "api"
				}
			}
			return objs
		}, "target Deployment api does not exist"},
		{"canary next to its own Service", "prod", func(objs []Object) []Object {
			return append(objs, Object{Kind: "Service", Namespace: "herald", Name: "dispatch", Value: &corev1.Service{}})
		}, "Flagger owns it"},
		{"canary gated on a missing template", "prod", func(objs []Object) []Object {
			for _, c := range Of[*Canary](objs) {
				if c.Name == "ingest" {
					c.Spec.Analysis.Metrics[0].TemplateRef.Name = "request-success-rate"
				}
			}
			return objs
		}, "MetricTemplate request-success-rate does not exist"},
		{"unsubscribe links on a host the gateway does not route", "dev", func(objs []Object) []Object {
			for _, vs := range Of[*istionetworking.VirtualService](objs) {
				vs.Spec.Hosts = []string{"partners.dev.herald.example"}
			}
			return objs
		}, "HERALD_PUBLIC_URL"},
		{"SMTP relay outside the egress allow-list", "prod", func(objs []Object) []Object {
			for _, se := range Of[*istionetworking.ServiceEntry](objs) {
				if se.Name == "smtp-relay" {
					se.Spec.Ports[0].Number = 25
				}
			}
			return objs
		}, "HERALD_SMTP_ADDR"},
		{"SMTP relay in plain text", "prod", func(objs []Object) []Object {
			for _, cm := range Of[*corev1.ConfigMap](objs) {
				if strings.HasPrefix(cm.Name, "dispatch") {
					cm.Data["HERALD_SMTP_TLS"] = "none"
				}
			}
			return objs
		}, "HERALD_SMTP_TLS=\"none\""},
		{"SMTP password in git", "dev", func(objs []Object) []Object {
			c := &deployment(objs, "dispatch").Spec.Template.Spec.Containers[0]
			for i := range c.Env {
				if c.Env[i].Name == "HERALD_SMTP_PASSWORD" {
					c.Env[i].ValueFrom, c.Env[i].Value = nil, "hunter2"
				}
			}
			return objs
		}, "HERALD_SMTP_PASSWORD must come from a Secret"},
		{"SES key in git", "prod", func(objs []Object) []Object {
			c := &deployment(objs, "dispatch").Spec.Template.Spec.Containers[0]
			for i := range c.Env {
				if c.Env[i].Name == "HERALD_SES_SECRET_ACCESS_KEY" {
					c.Env[i].ValueFrom, c.Env[i].Value = nil, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
				}
			}
			return objs
		}, "HERALD_SES_SECRET_ACCESS_KEY must come from a Secret"},
		{"database URL in a ConfigMap", "dev", func(objs []Object) []Object {
			for _, cm := range Of[*corev1.ConfigMap](objs) {
				if strings.HasPrefix(cm.Name, "recommend") {
					cm.Data["HERALD_DATABASE_URL"] = "postgres://herald:pw@db/herald"
				}
			}
			return objs
		}, "HERALD_DATABASE_URL must come from a Secret"},
		{"SMTP user without a password", "prod", func(objs []Object) []Object {
			c := &deployment(objs, "dispatch").Spec.Template.Spec.Containers[0]
			c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "HERALD_SMTP_PASSWORD" })
			return objs
		}, "HERALD_SMTP_USERNAME without HERALD_SMTP_PASSWORD"},
		{"VERP without its secret", "prod", func(objs []Object) []Object {
			c := &deployment(objs, "dispatch").Spec.Template.Spec.Containers[0]
			c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "HERALD_SMTP_VERP_SECRET" })
			return objs
		}, "HERALD_SMTP_RETURN_DOMAIN without HERALD_SMTP_VERP_SECRET"},
		{"Canary target port no container has", "prod", func(objs []Object) []Object {
			for _, c := range Of[*Canary](objs) {
				if c.Name == "render" {
					c.Spec.Service.TargetPort = intstr.FromString("metrics")
				}
			}
			return objs
		}, "service targetPort metrics"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.breaks(decoded(t, tc.overlay)), root)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("check: %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
}

func TestCheckSkaffoldCatches(t *testing.T) {
	objs := map[string][]Object{}
	for overlay := range renderAll(t) {
		objs[filepath.Join("deploy", "k8s", "overlays", overlay)] = decoded(t, overlay)
	}
	b, err := os.ReadFile(filepath.Join(root, "skaffold.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"main that is a library", "main: ./render\n", "main: ./shared/messaging\n", "holds no package main"},
		{"image no container runs", "image: herald-dispatch\n", "image: herald-dispatcher\n", "runs image herald-dispatch, which no artifact builds"},
		{"profile deploying no overlay", `paths: ["deploy/k8s/overlays/prod"]`, `paths: ["deploy/k8s/overlays/production"]`, "is not an overlay"},
		{"unknown field", "fromImage:", "baseImage:", "baseImage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(b), tc.old) {
				t.Fatalf("skaffold.yaml has no %q to change", tc.old)
			}
			s, err := DecodeSkaffold([]byte(strings.Replace(string(b), tc.old, tc.new, 1)))
			if err == nil {
				err = CheckSkaffold(s, root, objs)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestMeshConfig(t *testing.T) {
	mc, err := LoadMeshConfig("mesh-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for overlay := range renderAll(t) {
		if err := CheckMeshConfig(mc, decoded(t, overlay)); err != nil {
			t.Errorf("%s: %v", overlay, err)
		}
	}
	// A Telemetry naming a provider the mesh lacks is caught.
	objs := decoded(t, "prod")
	for _, tm := range Of[*istiotelemetry.Telemetry](objs) {
		tm.Spec.Tracing[0].Providers[0].Name = "zipkin"
	}
	if err := CheckMeshConfig(mc, objs); err == nil || !strings.Contains(err.Error(), "provider zipkin") {
		t.Errorf("check with an unknown tracing provider: %v", err)
	}
	// So is a misspelt mesh setting.
	bad := filepath.Join(t.TempDir(), "mesh.yaml")
	if err := os.WriteFile(bad, []byte("enablePrometheusMerg: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadMeshConfig(bad); err == nil || !strings.Contains(err.Error(), "enablePrometheusMerg") {
		t.Errorf("load misspelt mesh config: %v", err)
	}
}

// The settings the services declare secret are read from their code, so
// each provider's key is covered without a list to keep.
func TestSecretSettingsAreReadFromTheCode(t *testing.T) {
	var all [][]byte
	for _, dir := range []string{"dispatch", "ingest", "render", "recommend", "shared/service"} {
		src, err := goSources(filepath.Join("..", "..", dir))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, src)
	}
	got := secretSettings(all...)
	for _, want := range []string{"HERALD_DATABASE_URL", "HERALD_SMTP_PASSWORD", "HERALD_SMTP_VERP_SECRET",
		"HERALD_SES_SECRET_ACCESS_KEY", "HERALD_SENDGRID_KEY", "HERALD_ADS_TOKEN", "HERALD_UNSUBSCRIBE_SECRET"} {
		if !got[want] {
			t.Errorf("%s is not among the secret settings read from the code: %v", want, got)
		}
	}
	if got["HERALD_SES_REGION"] {
		t.Error("HERALD_SES_REGION, a plain setting, was read as a secret")
	}
}
