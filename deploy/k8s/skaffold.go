package k8s

import (
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"herald/deploy/stack"
)

// Skaffold is the subset of skaffold's config schema (skaffold/v4beta*)
// that skaffold.yaml uses, decoded strictly like the manifests: a field
// outside it is an error, so declare a field here before using it.
type Skaffold struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	SkaffoldPipeline
	Profiles []SkaffoldProfile `json:"profiles,omitempty"`
}

// SkaffoldPipeline is what a config or a profile builds and deploys.
type SkaffoldPipeline struct {
	Build *struct {
		Artifacts []SkaffoldArtifact `json:"artifacts,omitempty"`
		TagPolicy *struct {
			GitCommit *struct {
				Variant string `json:"variant,omitempty"`
			} `json:"gitCommit,omitempty"`
			InputDigest *struct{} `json:"inputDigest,omitempty"`
		} `json:"tagPolicy,omitempty"`
		Local *struct {
			Push        *bool `json:"push,omitempty"`
			Concurrency *int  `json:"concurrency,omitempty"`
		} `json:"local,omitempty"`
		Platforms []string `json:"platforms,omitempty"`
	} `json:"build,omitempty"`
	Manifests *struct {
		Kustomize *struct {
			Paths []string `json:"paths"`
		} `json:"kustomize,omitempty"`
	} `json:"manifests,omitempty"`
	Deploy *struct {
		Kubectl *struct {
			DefaultNamespace *string `json:"defaultNamespace,omitempty"`
			Flags            *struct {
				Apply []string `json:"apply,omitempty"`
			} `json:"flags,omitempty"`
		} `json:"kubectl,omitempty"`
		StatusCheck                *bool `json:"statusCheck,omitempty"`
		StatusCheckDeadlineSeconds int   `json:"statusCheckDeadlineSeconds,omitempty"`
	} `json:"deploy,omitempty"`
}

// SkaffoldProfile overrides the pipeline when activated.
type SkaffoldProfile struct {
	Name       string `json:"name"`
	Activation []struct {
		Env         string `json:"env,omitempty"`
		KubeContext string `json:"kubeContext,omitempty"`
		Command     string `json:"command,omitempty"`
	} `json:"activation,omitempty"`
	// Patches are JSON patches applied to the base config.
	Patches []struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		From  string `json:"from,omitempty"`
		Value any    `json:"value,omitempty"`
	} `json:"patches,omitempty"`
	SkaffoldPipeline
}

// SkaffoldArtifact is one image, built with ko.
type SkaffoldArtifact struct {
	Image   string `json:"image"`
	Context string `json:"context,omitempty"`
	Ko      *struct {
		FromImage    string `json:"fromImage,omitempty"`
		Main         string `json:"main,omitempty"`
		Dir          string `json:"dir,omitempty"`
		Dependencies *struct {
			Paths  []string `json:"paths,omitempty"`
			Ignore []string `json:"ignore,omitempty"`
		} `json:"dependencies,omitempty"`
		Env     []string          `json:"env,omitempty"`
		Flags   []string          `json:"flags,omitempty"`
		Ldflags []string          `json:"ldflags,omitempty"`
		Labels  map[string]string `json:"labels,omitempty"`
	} `json:"ko,omitempty"`
}

// LoadSkaffold reads and strictly decodes a skaffold config.
func LoadSkaffold(path string) (*Skaffold, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return DecodeSkaffold(b)
}

// DecodeSkaffold strictly decodes a skaffold config.
func DecodeSkaffold(b []byte) (*Skaffold, error) {
	js, err := sigsyaml.YAMLToJSONStrict(b)
	if err != nil {
		return nil, fmt.Errorf("skaffold config: %w", err)
	}
	var s Skaffold
	if err := strictJSON(js, &s); err != nil {
		return nil, fmt.Errorf("skaffold config: %w", err)
	}
	return &s, nil
}

// CheckSkaffold checks a skaffold config against the checkout at root and
// the rendered overlays (by overlay directory, relative to root): every
// artifact builds a main package with ko, every image the overlays run is
// built, every artifact is run, and every profile deploys an overlay.
func CheckSkaffold(s *Skaffold, root string, rendered map[string][]Object) error {
	var errs []error
	if !strings.HasPrefix(s.APIVersion, "skaffold/v4beta") || s.Kind != "Config" {
		errs = append(errs, fmt.Errorf("apiVersion %q kind %q: want skaffold/v4beta* Config", s.APIVersion, s.Kind))
	}
	if s.Build == nil || len(s.Build.Artifacts) == 0 {
		return errors.Join(append(errs, errors.New("build.artifacts is empty"))...)
	}
	images := map[string]bool{}
	for _, a := range s.Build.Artifacts {
		if images[a.Image] {
			errs = append(errs, fmt.Errorf("artifact %s: listed twice", a.Image))
		}
		images[a.Image] = true
		if a.Ko == nil {
			errs = append(errs, fmt.Errorf("artifact %s: not built with ko", a.Image))
			continue
		}
		dir := filepath.Join(root, a.Context, a.Ko.Dir, a.Ko.Main)
		if err := mainPackage(dir); err != nil {
			errs = append(errs, fmt.Errorf("artifact %s: main %q: %w", a.Image, a.Ko.Main, err))
		}
		if a.Ko.Dependencies != nil {
			for _, p := range a.Ko.Dependencies.Paths {
				matches, _ := filepath.Glob(filepath.Join(root, a.Context, strings.TrimSuffix(p, "/**")))
				if len(matches) == 0 {
					errs = append(errs, fmt.Errorf("artifact %s: dependency path %q matches nothing", a.Image, p))
				}
			}
		}
	}
	// Every service has an artifact.
	for _, svc := range stack.Services {
		if !images["herald-"+svc] {
			errs = append(errs, fmt.Errorf("service %s has no artifact herald-%s", svc, svc))
		}
	}
	deployed := map[string]bool{}
	pipelines := []SkaffoldPipeline{s.SkaffoldPipeline}
	names := []string{"(default)"}
	for _, p := range s.Profiles {
		pipelines = append(pipelines, p.SkaffoldPipeline)
		names = append(names, "profile "+p.Name)
	}
	for i, p := range pipelines {
		if p.Manifests == nil || p.Manifests.Kustomize == nil {
			if i == 0 {
				errs = append(errs, fmt.Errorf("%s: deploys no kustomize overlay", names[i]))
			}
			continue
		}
		for _, path := range p.Manifests.Kustomize.Paths {
			objs, ok := rendered[filepath.Clean(path)]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: kustomize path %s is not an overlay", names[i], path))
				continue
			}
			deployed[path] = true
			used := map[string]bool{}
			for _, o := range objs {
				for _, img := range podImages(o) {
					used[img] = true
					if img != "auto" && !images[img] {
						errs = append(errs, fmt.Errorf("%s: %s runs image %s, which no artifact builds", names[i], o.ID(), img))
					}
				}
			}
			for img := range images {
				if !used[img] {
					errs = append(errs, fmt.Errorf("%s: artifact %s is built but %s runs no container with it", names[i], img, path))
				}
			}
		}
	}
	for _, want := range []string{"dev", "prod"} {
		if !slices.ContainsFunc(s.Profiles, func(p SkaffoldProfile) bool { return p.Name == want }) {
			errs = append(errs, fmt.Errorf("no %s profile", want))
		}
	}
	return errors.Join(errs...)
}

// mainPackage reports whether dir holds a Go package main.
func mainPackage(dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return err
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		pf, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.PackageClauseOnly)
		if err != nil {
			return err
		}
		if pf.Name.Name == "main" {
			return nil
		}
	}
	return fmt.Errorf("%s holds no package main", dir)
}

// podImages lists the images of a workload's containers and init containers.
func podImages(o Object) []string {
	var imgs []string
	switch v := o.Value.(type) {
	case *appsv1.Deployment:
		for _, c := range slices.Concat(v.Spec.Template.Spec.InitContainers, v.Spec.Template.Spec.Containers) {
			imgs = append(imgs, c.Image)
		}
	case *batchv1.Job:
		for _, c := range slices.Concat(v.Spec.Template.Spec.InitContainers, v.Spec.Template.Spec.Containers) {
			imgs = append(imgs, c.Image)
		}
	}
	return imgs
}
