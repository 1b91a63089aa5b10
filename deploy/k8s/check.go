package k8s

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	istionetworking "istio.io/client-go/pkg/apis/networking/v1"
	istiosecurity "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsyaml "sigs.k8s.io/yaml"

	"herald/shared/messaging"
)

// Workers are the Pub/Sub stages, each run by the Deployment of its name.
var Workers = []messaging.Stage{messaging.Recommend, messaging.Render, messaging.Dispatch}

// A check looks at one overlay's objects and reports every inconsistency.
type check struct {
	name string
	run  func(m *manifest) []error
}

// Checks are the cross-object checks every overlay must pass.
var checks = []check{
	{"selectors", checkSelectors},
	{"ports", checkPorts},
	{"principals", checkPrincipals},
	{"subscriptions", checkSubscriptions},
	{"scaling", checkScaling},
	{"pods", checkPods},
	{"config", checkConfig},
	{"routing", checkRouting},
	{"edge", checkEdgePaths},
}

// Check runs every cross-object check on one overlay's objects. root is the
// module root, where the services' sources are.
func Check(objs []Object, root string) error {
	m := newManifest(objs, root)
	var errs []error
	for _, c := range checks {
		for _, err := range c.run(m) {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
		}
	}
	return errors.Join(errs...)
}

// manifest indexes one overlay's objects.
type manifest struct {
	objs []Object
	root string
}

func newManifest(objs []Object, root string) *manifest { return &manifest{objs: objs, root: root} }

// pods are the pod templates of the Deployments, by Deployment.
func (m *manifest) deployments() []*appsv1.Deployment { return Of[*appsv1.Deployment](m.objs) }

func (m *manifest) deployment(ns, name string) *appsv1.Deployment {
	for _, d := range m.deployments() {
		if d.Namespace == ns && d.Name == name {
			return d
		}
	}
	return nil
}

func (m *manifest) configMap(ns, name string) *corev1.ConfigMap {
	for _, c := range Of[*corev1.ConfigMap](m.objs) {
		if c.Namespace == ns && c.Name == name {
			return c
		}
	}
	return nil
}

// herald reports whether d runs one of Herald's binaries.
func herald(d *appsv1.Deployment) bool {
	return d.Spec.Template.Labels["app.kubernetes.io/part-of"] == "herald"
}

// selecting returns the Deployments in ns whose pods sel matches.
func (m *manifest) selecting(ns string, sel labels.Selector) []*appsv1.Deployment {
	var out []*appsv1.Deployment
	for _, d := range m.deployments() {
		if d.Namespace == ns && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, d)
		}
	}
	return out
}

func checkSelectors(m *manifest) []error {
	var errs []error
	for _, d := range m.deployments() {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || d.Spec.Selector == nil || sel.Empty() {
			errs = append(errs, fmt.Errorf("Deployment %s: selector missing or invalid: %v", d.Name, err))
			continue
		}
		if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			errs = append(errs, fmt.Errorf("Deployment %s: selector %s does not match its pod labels %v", d.Name, sel, d.Spec.Template.Labels))
		}
	}
	for _, s := range Of[*corev1.Service](m.objs) {
		if len(s.Spec.Selector) == 0 {
			errs = append(errs, fmt.Errorf("Service %s: no selector", s.Name))
		} else if len(m.selecting(s.Namespace, labels.SelectorFromSet(s.Spec.Selector))) == 0 {
			errs = append(errs, fmt.Errorf("Service %s: selector %v matches no pod template", s.Name, s.Spec.Selector))
		}
	}
	// A pod covered by two budgets cannot be evicted at all.
	covered := map[string]string{}
	for _, p := range Of[*policyv1.PodDisruptionBudget](m.objs) {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || sel.Empty() {
			errs = append(errs, fmt.Errorf("PodDisruptionBudget %s: selector missing or invalid: %v", p.Name, err))
			continue
		}
		ds := m.selecting(p.Namespace, sel)
		if len(ds) == 0 {
			errs = append(errs, fmt.Errorf("PodDisruptionBudget %s: selector %s matches no pod template", p.Name, sel))
		}
		for _, d := range ds {
			if other, ok := covered[d.Name]; ok {
				errs = append(errs, fmt.Errorf("Deployment %s: pods covered by PodDisruptionBudgets %s and %s", d.Name, other, p.Name))
			}
			covered[d.Name] = p.Name
		}
	}
	for _, d := range m.deployments() {
		if _, ok := covered[d.Name]; !ok {
			errs = append(errs, fmt.Errorf("Deployment %s: no PodDisruptionBudget covers its pods", d.Name))
		}
	}
	// Istio policies with a workload selector must select something: a
	// selector that matches nothing is a policy silently not applied.
	type selected struct {
		id string
		ns string
		ml map[string]string
	}
	var istio []selected
	for _, o := range m.objs {
		var ml map[string]string
		switch v := o.Value.(type) {
		case *istiosecurity.AuthorizationPolicy:
			ml = v.Spec.GetSelector().GetMatchLabels()
		case *istiosecurity.RequestAuthentication:
			ml = v.Spec.GetSelector().GetMatchLabels()
		case *istiosecurity.PeerAuthentication:
			ml = v.Spec.GetSelector().GetMatchLabels()
		case *istionetworking.Sidecar:
			ml = v.Spec.GetWorkloadSelector().GetLabels()
		case *istionetworking.Gateway:
			ml = v.Spec.GetSelector()
			if len(ml) == 0 {
				errs = append(errs, fmt.Errorf("%s: no selector", o.ID()))
			}
		}
		if len(ml) > 0 {
			istio = append(istio, selected{o.ID(), o.Namespace, ml})
		}
	}
	for _, s := range istio {
		if len(m.selecting(s.ns, labels.SelectorFromSet(s.ml))) == 0 {
			errs = append(errs, fmt.Errorf("%s: selector %v matches no pod template", s.id, s.ml))
		}
	}
	return errs
}

// checkPorts: every Service port reaches a declared container port on every
// pod it selects, and is named so Istio knows its protocol.
func checkPorts(m *manifest) []error {
	var errs []error
	for _, s := range Of[*corev1.Service](m.objs) {
		pods := m.selecting(s.Namespace, labels.SelectorFromSet(s.Spec.Selector))
		for _, p := range s.Spec.Ports {
			if p.AppProtocol == nil && !istioPortName.MatchString(p.Name) {
				errs = append(errs, fmt.Errorf("Service %s port %d: name %q does not tell Istio the protocol (http, http2, https, grpc, tcp[-suffix]) and appProtocol is unset", s.Name, p.Port, p.Name))
			}
			target := p.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(p.Port)
			}
			for _, d := range pods {
				if !hasContainerPort(d.Spec.Template.Spec.Containers, target) {
					errs = append(errs, fmt.Errorf("Service %s port %d: targetPort %s is not a port of any container of Deployment %s", s.Name, p.Port, target.String(), d.Name))
				}
			}
		}
	}
	return errs
}

var istioPortName = regexp.MustCompile(`^(http|http2|https|grpc|grpc-web|tcp|tls|mongo|mysql|redis)(-.*)?$`)

func hasContainerPort(cs []corev1.Container, target intstr.IntOrString) bool {
	for _, c := range cs {
		for _, cp := range c.Ports {
			if (target.Type == intstr.String && cp.Name == target.StrVal) || (target.Type == intstr.Int && cp.ContainerPort == target.IntVal) {
				return true
			}
		}
	}
	return false
}

// principalRE is the SPIFFE identity Istio gives a pod: its service account.
var principalRE = regexp.MustCompile(`^cluster\.local/ns/([a-z0-9-]+)/sa/([a-z0-9-]+)$`)

// checkPrincipals: every principal an AuthorizationPolicy names is a
// ServiceAccount in the output, and every pod runs as one that exists.
func checkPrincipals(m *manifest) []error {
	var errs []error
	sas := map[string]bool{}
	for _, sa := range Of[*corev1.ServiceAccount](m.objs) {
		sas[sa.Namespace+"/"+sa.Name] = true
	}
	for _, d := range m.deployments() {
		name := d.Spec.Template.Spec.ServiceAccountName
		if name == "" || name == "default" {
			errs = append(errs, fmt.Errorf("Deployment %s: runs as the namespace's default service account; give it its own", d.Name))
		} else if !sas[d.Namespace+"/"+name] {
			errs = append(errs, fmt.Errorf("Deployment %s: service account %s is not in the manifests", d.Name, name))
		}
	}
	for _, p := range Of[*istiosecurity.AuthorizationPolicy](m.objs) {
		for _, r := range p.Spec.GetRules() {
			for _, f := range r.GetFrom() {
				src := f.GetSource()
				for _, pr := range slices.Concat(src.GetPrincipals(), src.GetNotPrincipals()) {
					sm := principalRE.FindStringSubmatch(pr)
					if sm == nil {
						errs = append(errs, fmt.Errorf("AuthorizationPolicy %s: principal %q is not cluster.local/ns/<namespace>/sa/<service account> (no wildcards: name each caller)", p.Name, pr))
						continue
					}
					if !sas[sm[1]+"/"+sm[2]] {
						errs = append(errs, fmt.Errorf("AuthorizationPolicy %s: principal %q names no ServiceAccount in the manifests", p.Name, pr))
					}
				}
				if len(src.GetNamespaces()) > 0 || len(src.GetIpBlocks()) > 0 {
					errs = append(errs, fmt.Errorf("AuthorizationPolicy %s: allow by principal, not by namespace or address", p.Name))
				}
			}
		}
	}
	return errs
}

// checkSubscriptions: each worker is scaled on exactly the subscription its
// code reads, which shared/messaging creates.
func checkSubscriptions(m *manifest) []error {
	var errs []error
	created := map[string]bool{}
	for _, s := range Workers {
		created[s.Subscription()] = true
	}
	scaled := map[string]bool{}
	for _, so := range Of[*ScaledObject](m.objs) {
		target := so.Spec.ScaleTargetRef.Name
		want := ""
		for _, s := range Workers {
			if string(s) == target {
				want = s.Subscription()
			}
		}
		for _, t := range so.Spec.Triggers {
			if t.Type != "gcp-pubsub" {
				continue
			}
			sub := t.Metadata["subscriptionName"]
			sub = sub[strings.LastIndex(sub, "/")+1:]
			switch {
			case !created[sub]:
				errs = append(errs, fmt.Errorf("ScaledObject %s: subscription %q is not one shared/messaging creates", so.Name, sub))
			case want == "":
				errs = append(errs, fmt.Errorf("ScaledObject %s: scales %s on %s, but %s reads no subscription", so.Name, target, sub, target))
			case sub != want:
				errs = append(errs, fmt.Errorf("ScaledObject %s: scales %s on %s, but %s reads %s", so.Name, target, sub, target, want))
			default:
				scaled[target] = true
			}
		}
	}
	for _, s := range Workers {
		d := m.deployment("herald", string(s))
		if d == nil {
			errs = append(errs, fmt.Errorf("stage %s has no Deployment named %s", s, s))
			continue
		}
		if len(Of[*ScaledObject](m.objs)) > 0 && !scaled[string(s)] {
			errs = append(errs, fmt.Errorf("Deployment %s: not scaled on its subscription %s", s, s.Subscription()))
		}
	}
	return errs
}

// checkScaling: autoscalers and canaries point at what exists, one
// autoscaler per Deployment, and Deployments under one leave replicas alone.
func checkScaling(m *manifest) []error {
	var errs []error
	scaledBy := map[string]string{}
	claim := func(by, ns, target string) {
		if m.deployment(ns, target) == nil {
			errs = append(errs, fmt.Errorf("%s: target Deployment %s does not exist", by, target))
			return
		}
		if other, ok := scaledBy[target]; ok {
			errs = append(errs, fmt.Errorf("Deployment %s: scaled by both %s and %s", target, other, by))
		}
		scaledBy[target] = by
	}
	for _, h := range Of[*autoscalingv2.HorizontalPodAutoscaler](m.objs) {
		if h.Spec.ScaleTargetRef.Kind != "Deployment" {
			errs = append(errs, fmt.Errorf("HorizontalPodAutoscaler %s: targets a %s", h.Name, h.Spec.ScaleTargetRef.Kind))
		}
		claim("HorizontalPodAutoscaler "+h.Name, h.Namespace, h.Spec.ScaleTargetRef.Name)
	}
	for _, so := range Of[*ScaledObject](m.objs) {
		claim("ScaledObject "+so.Name, so.Namespace, so.Spec.ScaleTargetRef.Name)
		for _, t := range so.Spec.Triggers {
			if t.AuthenticationRef != nil && !m.has("TriggerAuthentication", so.Namespace, t.AuthenticationRef.Name) {
				errs = append(errs, fmt.Errorf("ScaledObject %s: TriggerAuthentication %s does not exist", so.Name, t.AuthenticationRef.Name))
			}
		}
	}
	for _, d := range m.deployments() {
		if _, ok := scaledBy[d.Name]; ok && d.Spec.Replicas != nil {
			errs = append(errs, fmt.Errorf("Deployment %s: sets replicas although an autoscaler owns the count (every apply would reset it)", d.Name))
		}
	}
	for _, c := range Of[*Canary](m.objs) {
		s := c.Spec
		if m.deployment(c.Namespace, s.TargetRef.Name) == nil {
			errs = append(errs, fmt.Errorf("Canary %s: target Deployment %s does not exist", c.Name, s.TargetRef.Name))
		}
		if a := s.AutoscalerRef; a != nil {
			kind := map[string]string{"autoscaling/v2": "HorizontalPodAutoscaler", "keda.sh/v1alpha1": "ScaledObject"}[a.APIVersion]
			if kind != a.Kind || !m.has(a.Kind, c.Namespace, a.Name) {
				errs = append(errs, fmt.Errorf("Canary %s: autoscaler %s %s %s does not exist", c.Name, a.APIVersion, a.Kind, a.Name))
			} else if scaledBy[s.TargetRef.Name] != a.Kind+" "+a.Name {
				errs = append(errs, fmt.Errorf("Canary %s: autoscalerRef %s does not scale %s (%s does)", c.Name, a.Name, s.TargetRef.Name, scaledBy[s.TargetRef.Name]))
			}
		} else if _, ok := scaledBy[s.TargetRef.Name]; ok {
			errs = append(errs, fmt.Errorf("Canary %s: %s is autoscaled, so the Canary needs autoscalerRef (or the primary is not scaled)", c.Name, s.TargetRef.Name))
		}
		for _, mt := range s.Analysis.Metrics {
			if mt.TemplateRef != nil && !m.has("MetricTemplate", c.Namespace, mt.TemplateRef.Name) {
				errs = append(errs, fmt.Errorf("Canary %s: MetricTemplate %s does not exist", c.Name, mt.TemplateRef.Name))
			}
		}
		if d := m.deployment(c.Namespace, s.TargetRef.Name); d != nil && s.Service.TargetPort.Type == intstr.String &&
			!hasContainerPort(d.Spec.Template.Spec.Containers, s.Service.TargetPort) {
			errs = append(errs, fmt.Errorf("Canary %s: service targetPort %s is not a container port of %s", c.Name, s.Service.TargetPort.StrVal, d.Name))
		}
	}
	// With canaries, Flagger owns the Services of their targets.
	for _, c := range Of[*Canary](m.objs) {
		if m.has("Service", c.Namespace, c.Spec.TargetRef.Name) {
			errs = append(errs, fmt.Errorf("Canary %s: Service %s is in the manifests, but Flagger owns it (re-applying it would send traffic to the canary)", c.Name, c.Spec.TargetRef.Name))
		}
	}
	return errs
}

func (m *manifest) has(kind, ns, name string) bool {
	for _, o := range m.objs {
		if o.Kind == kind && o.Namespace == ns && o.Name == name {
			return true
		}
	}
	return false
}

// env resolves a container's environment as the kubelet would: envFrom
// ConfigMaps in order, then env values (references are reported as such).
func (m *manifest) env(ns string, c corev1.Container) (map[string]string, []error) {
	out := map[string]string{}
	var errs []error
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil {
			continue
		}
		cm := m.configMap(ns, ef.ConfigMapRef.Name)
		if cm == nil {
			errs = append(errs, fmt.Errorf("container %s: ConfigMap %s does not exist", c.Name, ef.ConfigMapRef.Name))
			continue
		}
		for k, v := range cm.Data {
			out[k] = v
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			out[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			out[e.Name] = "<secret " + e.ValueFrom.SecretKeyRef.Name + ">"
		case e.ValueFrom.ResourceFieldRef != nil:
			out[e.Name] = "<resource " + e.ValueFrom.ResourceFieldRef.Resource + ">"
		default:
			out[e.Name] = "<ref>"
		}
	}
	return out, errs
}

// checkPods: the pod and container settings every Herald workload needs.
func checkPods(m *manifest) []error {
	var errs []error
	for _, d := range m.deployments() {
		spec := d.Spec.Template.Spec
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("Deployment %s: "+format, append([]any{d.Name}, args...)...))
		}
		if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 ||
			sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			fail("pod must run as a non-root user with the RuntimeDefault seccomp profile")
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			fail("mounts a Kubernetes API token it does not use")
		}
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			sc := c.SecurityContext
			if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				fail("container %s: needs allowPrivilegeEscalation false, a read-only root filesystem and all capabilities dropped", c.Name)
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[r]; !ok {
					fail("container %s: no %s request", c.Name, r)
				}
				if _, ok := c.Resources.Limits[r]; !ok {
					fail("container %s: no %s limit", c.Name, r)
				}
			}
		}
		if !herald(d) {
			continue
		}
		for _, c := range spec.Containers {
			if c.LivenessProbe == nil || c.ReadinessProbe == nil || c.StartupProbe == nil {
				fail("container %s: needs startup, liveness and readiness probes", c.Name)
			} else if c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" ||
				c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
				fail("container %s: liveness must be /healthz and readiness /readyz", c.Name)
			}
			// The Go runtime must see the container's limits, not the node's.
			for name, res := range map[string]string{"GOMAXPROCS": "limits.cpu", "GOMEMLIMIT": "limits.memory"} {
				i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
				if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.ResourceFieldRef == nil ||
					c.Env[i].ValueFrom.ResourceFieldRef.Resource != res ||
					(c.Env[i].ValueFrom.ResourceFieldRef.ContainerName != "" && c.Env[i].ValueFrom.ResourceFieldRef.ContainerName != c.Name) {
					fail("container %s: %s must come from its own %s (downward API)", c.Name, name, res)
				}
			}
			env, eerrs := m.env(d.Namespace, c)
			errs = append(errs, eerrs...)
			grace, err := time.ParseDuration(env["HERALD_SHUTDOWN_GRACE"])
			if err != nil {
				fail("container %s: HERALD_SHUTDOWN_GRACE %q: %v", c.Name, env["HERALD_SHUTDOWN_GRACE"], err)
				continue
			}
			var preStop time.Duration
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
				preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
			}
			if tgp := spec.TerminationGracePeriodSeconds; tgp == nil || time.Duration(*tgp)*time.Second <= preStop+grace {
				fail("terminationGracePeriodSeconds must exceed preStop (%v) + HERALD_SHUTDOWN_GRACE (%v), or SIGKILL cuts the drain", preStop, grace)
			}
			if cfg, ok := d.Spec.Template.Annotations["proxy.istio.io/config"]; ok {
				var pc struct {
					TerminationDrainDuration string `json:"terminationDrainDuration"`
				}
				if err := sigsyaml.Unmarshal([]byte(cfg), &pc); err != nil {
					fail("proxy.istio.io/config: %v", err)
				} else if dd, err := time.ParseDuration(pc.TerminationDrainDuration); err != nil || dd <= grace {
					fail("the sidecar's terminationDrainDuration (%q) must outlast HERALD_SHUTDOWN_GRACE (%v): acks and commits of the drain go through it", pc.TerminationDrainDuration, grace)
				}
			}
		}
	}
	return errs
}

// checkConfig: each service is configured with settings its code reads, and
// with values it accepts.
func checkConfig(m *manifest) []error {
	var errs []error
	common, err := goSources(filepath.Join(m.root, "shared", "service"))
	if err != nil {
		return []error{err}
	}
	// Secrets that several services must share: render signs unsubscribe
	// links that ingest verifies.
	shared := map[string]string{}
	for _, d := range m.deployments() {
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				if e.Name != "HERALD_UNSUBSCRIBE_SECRET" {
					continue
				}
				ref := "(literal)"
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					ref = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
				}
				shared[d.Name] = ref
			}
		}
	}
	for _, want := range []string{"ingest", "render"} {
		if _, ok := shared[want]; !ok && m.deployment("herald", want) != nil {
			errs = append(errs, fmt.Errorf("Deployment %s: no HERALD_UNSUBSCRIBE_SECRET", want))
		}
	}
	if refs := slices.Compact(slices.Sorted(maps.Values(shared))); len(refs) > 1 || slices.Contains(refs, "(literal)") {
		errs = append(errs, fmt.Errorf("HERALD_UNSUBSCRIBE_SECRET must be one Secret key for every service (render signs, ingest verifies): %v", shared))
	}
	for _, d := range m.deployments() {
		if !herald(d) {
			continue
		}
		for _, c := range slices.Concat(d.Spec.Template.Spec.InitContainers, d.Spec.Template.Spec.Containers) {
			bin := strings.TrimPrefix(c.Image, "herald-")
			src, err := goSources(filepath.Join(m.root, bin))
			if err == nil && mainPackage(filepath.Join(m.root, bin)) != nil {
				err = errors.New("no package main there")
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("Deployment %s container %s: image %s is not a Herald service: %v", d.Name, c.Name, c.Image, err))
				continue
			}
			env, eerrs := m.env(d.Namespace, c)
			errs = append(errs, eerrs...)
			secrets := secretSettings(src, common)
			for k, v := range env {
				if strings.HasPrefix(k, "HERALD_") && !strings.Contains(string(src), `"`+k+`"`) && !strings.Contains(string(common), `"`+k+`"`) {
					errs = append(errs, fmt.Errorf("Deployment %s container %s: %s is not a setting %s reads", d.Name, c.Name, k, bin))
				}
				if secrets[k] && !strings.HasPrefix(v, "<secret ") {
					errs = append(errs, fmt.Errorf("Deployment %s container %s: %s must come from a Secret (%s declares it secret)", d.Name, c.Name, k, bin))
				}
			}
			// A secret in a ConfigMap is in git even where an env entry
			// from a Secret overrides it.
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef == nil {
					continue
				}
				if cm := m.configMap(d.Namespace, ef.ConfigMapRef.Name); cm != nil {
					for k := range cm.Data {
						if secrets[k] {
							errs = append(errs, fmt.Errorf("Deployment %s container %s: %s must come from a Secret, not ConfigMap %s", d.Name, c.Name, k, ef.ConfigMapRef.Name))
						}
					}
				}
			}
			if !slices.Contains(c.Args, "migrate") {
				if _, port, err := net.SplitHostPort(env["HERALD_HTTP_ADDR"]); err != nil || !hasContainerPort([]corev1.Container{c}, intstr.Parse(port)) {
					errs = append(errs, fmt.Errorf("Deployment %s container %s: HERALD_HTTP_ADDR %q is not one of its container ports", d.Name, c.Name, env["HERALD_HTTP_ADDR"]))
				}
			}
			if env["HERALD_MIGRATE"] == "true" {
				errs = append(errs, fmt.Errorf("Deployment %s container %s: HERALD_MIGRATE=true migrates from every replica; the migrate init container does it once per pod start", d.Name, c.Name))
			}
			// dispatch refuses to start unless every batch in flight can hold
			// a connection; check it before a rollout does.
			if bin == "dispatch" && !slices.Contains(c.Args, "migrate") {
				streams, _ := strconv.Atoi(env["HERALD_STREAMS"])
				inFlight, _ := strconv.Atoi(env["HERALD_IN_FLIGHT"])
				conns, _ := strconv.Atoi(env["HERALD_DB_MAX_CONNS"])
				if conns < streams*inFlight+2 {
					errs = append(errs, fmt.Errorf("Deployment %s: HERALD_DB_MAX_CONNS %d < HERALD_STREAMS x HERALD_IN_FLIGHT + 2 = %d", d.Name, conns, streams*inFlight+2))
				}
			}
		}
	}
	return errs
}

// checkRouting: the gateway serves the hosts its routes and the services'
// public URLs use, routes reach Services that exist, and egress covers
// what the services call.
func checkRouting(m *manifest) []error {
	var errs []error
	gwHosts := map[string][]string{}
	for _, g := range Of[*istionetworking.Gateway](m.objs) {
		for _, s := range g.Spec.GetServers() {
			gwHosts[g.Name] = append(gwHosts[g.Name], s.GetHosts()...)
		}
	}
	// routed maps host → whether /u/ reaches ingest on it.
	routed := map[string]bool{}
	checkGatewayHosts := func(id string, gateways, hosts []string) {
		for _, gw := range gateways {
			if gw == "mesh" {
				continue
			}
			name := gw[strings.LastIndex(gw, "/")+1:]
			served, ok := gwHosts[name]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: Gateway %s does not exist", id, gw))
				continue
			}
			for _, h := range hosts {
				if !strings.Contains(h, ".") {
					continue // the Service's short name, for mesh traffic
				}
				if !slices.Contains(served, h) {
					errs = append(errs, fmt.Errorf("%s: host %s is not served by Gateway %s (%v)", id, h, name, served))
				}
			}
		}
	}
	for _, vs := range Of[*istionetworking.VirtualService](m.objs) {
		id := "VirtualService " + vs.Name
		checkGatewayHosts(id, vs.Spec.GetGateways(), vs.Spec.GetHosts())
		for _, r := range vs.Spec.GetHttp() {
			for _, dst := range r.GetRoute() {
				host := dst.GetDestination().GetHost()
				name, ns, _ := strings.Cut(strings.TrimSuffix(host, ".svc.cluster.local"), ".")
				if ns == "" {
					ns = vs.Namespace
				}
				svc := serviceNamed(m, ns, name)
				if svc == nil {
					errs = append(errs, fmt.Errorf("%s: destination %s is not a Service in the manifests", id, host))
					continue
				}
				port := int32(dst.GetDestination().GetPort().GetNumber())
				if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == port }) {
					errs = append(errs, fmt.Errorf("%s: Service %s has no port %d", id, name, port))
				}
				if name == "ingest" {
					for _, mr := range r.GetMatch() {
						if mr.GetUri().GetPrefix() == "/u/" {
							for _, h := range vs.Spec.GetHosts() {
								routed[h] = true
							}
						}
					}
				}
			}
		}
	}
	for _, c := range Of[*Canary](m.objs) {
		checkGatewayHosts("Canary "+c.Name, c.Spec.Service.Gateways, c.Spec.Service.Hosts)
		if c.Spec.TargetRef.Name == "ingest" && slices.ContainsFunc(c.Spec.Service.Match, func(mr HTTPMatchRequest) bool { return mr.URI != nil && mr.URI.Prefix == "/u/" }) {
			for _, h := range c.Spec.Service.Hosts {
				routed[h] = true
			}
		}
	}
	seHosts := map[string][]uint32{}
	for _, se := range Of[*istionetworking.ServiceEntry](m.objs) {
		for _, h := range se.Spec.GetHosts() {
			for _, p := range se.Spec.GetPorts() {
				seHosts[h] = append(seHosts[h], p.GetNumber())
			}
		}
	}
	for _, d := range m.deployments() {
		if !herald(d) {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			env, _ := m.env(d.Namespace, c)
			if v, ok := env["HERALD_PUBLIC_URL"]; ok {
				u, err := url.Parse(v)
				if err != nil || u.Scheme != "https" || !routed[u.Hostname()] {
					errs = append(errs, fmt.Errorf("Deployment %s: HERALD_PUBLIC_URL %q must be https on a host whose /u/ the gateway routes to ingest (routed: %v)", d.Name, v, keys(routed)))
				}
			}
			// Egress is REGISTRY_ONLY: what a service dials must be declared.
			if v, ok := env["HERALD_SMTP_ADDR"]; ok && len(Of[*istionetworking.Sidecar](m.objs)) > 0 {
				host, port, err := net.SplitHostPort(v)
				p, _ := strconv.Atoi(port)
				if err != nil || !slices.Contains(seHosts[host], uint32(p)) {
					errs = append(errs, fmt.Errorf("Deployment %s: HERALD_SMTP_ADDR %q is not covered by a ServiceEntry host and port", d.Name, v))
				}
			}
			if _, ok := env["HERALD_SMTP_ADDR"]; ok {
				errs = append(errs, checkSMTPSecurity(d.Name, env)...)
			}
		}
	}
	return errs
}

// checkSMTPSecurity holds a cluster's SMTP relay to what a relay across the
// network needs: TLS (plain text is for a catcher on loopback), and a
// password with the user name and a VERP secret with the return domain
// (that those come from Secrets is checkConfig's rule for every secret).
func checkSMTPSecurity(deployment string, env map[string]string) []error {
	var errs []error
	switch v := env["HERALD_SMTP_TLS"]; v {
	case "", "starttls", "implicit":
	default:
		errs = append(errs, fmt.Errorf("Deployment %s: HERALD_SMTP_TLS=%q: a cluster reaches its relay with starttls or implicit", deployment, v))
	}
	if v := env["HERALD_SMTP_INSECURE_LOOPBACK"]; v != "" && v != "false" {
		errs = append(errs, fmt.Errorf("Deployment %s: HERALD_SMTP_INSECURE_LOOPBACK is for tests on loopback", deployment))
	}
	if env["HERALD_SMTP_USERNAME"] != "" && env["HERALD_SMTP_PASSWORD"] == "" && env["HERALD_SMTP_PASSWORD_FILE"] == "" {
		errs = append(errs, fmt.Errorf("Deployment %s: HERALD_SMTP_USERNAME without HERALD_SMTP_PASSWORD from a Secret", deployment))
	}
	if env["HERALD_SMTP_RETURN_DOMAIN"] != "" && env["HERALD_SMTP_VERP_SECRET"] == "" {
		errs = append(errs, fmt.Errorf("Deployment %s: HERALD_SMTP_RETURN_DOMAIN without HERALD_SMTP_VERP_SECRET from a Secret", deployment))
	}
	return errs
}

func serviceNamed(m *manifest, ns, name string) *corev1.Service {
	for _, s := range Of[*corev1.Service](m.objs) {
		if s.Namespace == ns && s.Name == name {
			return s
		}
	}
	return nil
}

func keys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// goSources concatenates the non-test Go files of one directory: where a
// service declares its settings.
// secretSetting finds a setting declared with config's Secret (the value
// the config log masks): set.Secret(&field, "flag", "HERALD_NAME", …).
var secretSetting = regexp.MustCompile(`\.Secret\(\s*&[^,]+,\s*"[^"]*",\s*"(HERALD_[A-Z0-9_]+)"`)

// secretSettings are the environment settings the sources declare secret.
// Read from the code, so a new secret flag is held to "from a Secret" the
// day it is added, with no list here to forget.
func secretSettings(sources ...[]byte) map[string]bool {
	out := map[string]bool{}
	for _, src := range sources {
		for _, m := range secretSetting.FindAllSubmatch(src, -1) {
			out[string(m[1])] = true
		}
	}
	return out
}

func goSources(dir string) ([]byte, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	var all []byte
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		all = append(all, b...)
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("no Go files in %s", dir)
	}
	return all, nil
}

// checkEdgePaths: every path the gateway's policy lets through is routed to
// ingest and allowed by ingest's own policy for calls from the gateway;
// otherwise the edge admits a request the mesh then refuses (or drops).
func checkEdgePaths(m *manifest) []error {
	var errs []error
	gateway := m.deployment("herald", "herald-gateway")
	ingest := m.deployment("herald", "ingest")
	if gateway == nil || ingest == nil {
		return nil
	}
	// The routes to ingest: from the VirtualService, or in prod from the
	// Canary that makes Flagger generate it.
	var routes []*StringMatch
	for _, vs := range Of[*istionetworking.VirtualService](m.objs) {
		for _, r := range vs.Spec.GetHttp() {
			for _, mr := range r.GetMatch() {
				u := mr.GetUri()
				routes = append(routes, &StringMatch{Exact: u.GetExact(), Prefix: u.GetPrefix(), Regex: u.GetRegex()})
			}
		}
	}
	for _, c := range Of[*Canary](m.objs) {
		if c.Spec.TargetRef.Name == "ingest" {
			for _, mr := range c.Spec.Service.Match {
				routes = append(routes, mr.URI)
			}
		}
	}
	gatewaySA := "cluster.local/ns/herald/sa/" + gateway.Spec.Template.Spec.ServiceAccountName
	for _, p := range Of[*istiosecurity.AuthorizationPolicy](m.objs) {
		sel := p.Spec.GetSelector().GetMatchLabels()
		if len(sel) == 0 || !labels.SelectorFromSet(sel).Matches(labels.Set(gateway.Spec.Template.Labels)) {
			continue
		}
		for _, r := range p.Spec.GetRules() {
			for _, to := range r.GetTo() {
				for _, pattern := range to.GetOperation().GetPaths() {
					path := strings.Replace(pattern, "*", "x", 1)
					if !slices.ContainsFunc(routes, func(sm *StringMatch) bool {
						return sm != nil && (sm.Exact == path || (sm.Prefix != "" && strings.HasPrefix(path, sm.Prefix)))
					}) {
						errs = append(errs, fmt.Errorf("AuthorizationPolicy %s admits %s at the gateway, but no route sends it to ingest", p.Name, pattern))
					}
					if !m.meshAllows(ingest, gatewaySA, path) {
						errs = append(errs, fmt.Errorf("AuthorizationPolicy %s admits %s at the gateway, but no policy lets the gateway (%s) call ingest there", p.Name, pattern, gatewaySA))
					}
				}
			}
		}
	}
	return errs
}

// meshAllows reports whether an ALLOW policy selecting d lets principal
// request path.
func (m *manifest) meshAllows(d *appsv1.Deployment, principal, path string) bool {
	for _, p := range Of[*istiosecurity.AuthorizationPolicy](m.objs) {
		sel := p.Spec.GetSelector().GetMatchLabels()
		if p.Spec.GetAction().String() != "ALLOW" || len(sel) == 0 || !labels.SelectorFromSet(sel).Matches(labels.Set(d.Spec.Template.Labels)) {
			continue
		}
		for _, r := range p.Spec.GetRules() {
			from := len(r.GetFrom()) == 0
			for _, f := range r.GetFrom() {
				from = from || slices.Contains(f.GetSource().GetPrincipals(), principal)
			}
			to := len(r.GetTo()) == 0
			for _, t := range r.GetTo() {
				to = to || slices.ContainsFunc(t.GetOperation().GetPaths(), func(pat string) bool { return istioPathMatch(pat, path) })
			}
			if from && to {
				return true
			}
		}
	}
	return false
}

// istioPathMatch matches as AuthorizationPolicy paths do: exact, "prefix*"
// or "*suffix".
func istioPathMatch(pattern, path string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasSuffix(pattern, "*"):
		return strings.HasPrefix(path, strings.TrimSuffix(pattern, "*"))
	case strings.HasPrefix(pattern, "*"):
		return strings.HasSuffix(path, strings.TrimPrefix(pattern, "*"))
	}
	return pattern == path
}
