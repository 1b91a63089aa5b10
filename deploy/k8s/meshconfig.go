package k8s

import (
	"errors"
	"fmt"
	"os"

	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	istionetworking "istio.io/client-go/pkg/apis/networking/v1"
	istiotelemetry "istio.io/client-go/pkg/apis/telemetry/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

// LoadMeshConfig strictly decodes the mesh config Herald expects
// (mesh-config.yaml). istioctl analyze ignores a mesh config file it cannot
// read, so this is what catches a broken one.
func LoadMeshConfig(path string) (*meshv1alpha1.MeshConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	js, err := sigsyaml.YAMLToJSONStrict(b)
	if err != nil {
		return nil, fmt.Errorf("mesh config: %w", err)
	}
	var mc meshv1alpha1.MeshConfig
	if err := protojson.Unmarshal(js, &mc); err != nil {
		return nil, fmt.Errorf("mesh config: %w", err)
	}
	return &mc, nil
}

// CheckMeshConfig checks an overlay against the mesh config: the
// providers its Telemetry names exist, and egress is as closed mesh-wide as
// the namespace's Sidecar says.
func CheckMeshConfig(mc *meshv1alpha1.MeshConfig, objs []Object) error {
	var errs []error
	providers := map[string]bool{}
	for _, p := range mc.GetExtensionProviders() {
		providers[p.GetName()] = true
	}
	for _, t := range Of[*istiotelemetry.Telemetry](objs) {
		var names []string
		for _, tr := range t.Spec.GetTracing() {
			for _, p := range tr.GetProviders() {
				names = append(names, p.GetName())
			}
		}
		for _, al := range t.Spec.GetAccessLogging() {
			for _, p := range al.GetProviders() {
				names = append(names, p.GetName())
			}
		}
		for _, n := range names {
			if !providers[n] {
				errs = append(errs, fmt.Errorf("Telemetry %s: provider %s is not in the mesh config's extensionProviders", t.Name, n))
			}
		}
	}
	if len(Of[*istionetworking.Sidecar](objs)) > 0 && mc.GetOutboundTrafficPolicy().GetMode() != meshv1alpha1.MeshConfig_OutboundTrafficPolicy_REGISTRY_ONLY {
		errs = append(errs, errors.New("the mesh config lets proxies reach unregistered hosts; Herald's egress is REGISTRY_ONLY"))
	}
	if md := mc.GetDefaultConfig().GetProxyMetadata(); md["ISTIO_META_DNS_CAPTURE"] != "true" {
		errs = append(errs, errors.New("DNS capture is off: the SMTP relay's TCP ServiceEntry gets no address"))
	}
	return errors.Join(errs...)
}
