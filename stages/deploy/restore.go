package deploy

import (
	"context"
	"fmt"
	"maps"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// revisionAnnotation is the deployment controller's revision of a ReplicaSet.
const revisionAnnotation = "deployment.kubernetes.io/revision"

// restoreDeadline is the least progress deadline a restore runs under:
// the default one.
const restoreDeadline int32 = 300

// ContainerName is the model server's container in every Deployment modelci renders.
const ContainerName = "model"

// restore puts rel, already verified, back onto the app's stable
// Deployments. Each takes the pod template of its newest ReplicaSet that
// ran rel.Image with rel.Model's image volume (or none, for a release
// that carries its model), as `kubectl rollout undo` does, or, when that
// ReplicaSet is gone, its live template with only the image, the model
// volume and modelci's version marks changed: nothing of the history's
// recorded configuration reaches the cluster. Replicas a canary held go back to stable. With cfg (the
// deployer's own configuration: an automatic rollback), an autoscaler a
// canary paused is applied again. It waits for the rollout and removes any
// canary.
func (t *Target) restore(ctx context.Context, ns string, rel Release, cfg *Config) error {
	stable, err := t.appDeployments(ctx, ns, rel.Name, TrackStable)
	if err != nil {
		return err
	}
	if len(stable) == 0 {
		return fmt.Errorf("restore %s %s in %s: %w: no Deployment of the app to restore onto", rel.Name, rel.Version, ns, ErrNoRelease)
	}
	canaries, err := t.appDeployments(ctx, ns, rel.Name, TrackCanary)
	if err != nil {
		return err
	}
	held := map[string]int32{}
	for _, c := range canaries {
		if c.Spec.Replicas != nil {
			held[c.Labels[LabelComponent]] += *c.Spec.Replicas
		}
	}
	for i := range stable {
		d := &stable[i]
		tmpl, err := t.restoreTemplate(ctx, d, rel)
		if err != nil {
			return err
		}
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		replicas += held[d.Labels[LabelComponent]]
		if err := t.apply(ctx, restored(d, rel, tmpl, replicas)); err != nil {
			return err
		}
		if cfg != nil && cfg.HPA.Max > 0 {
			if err := t.apply(ctx, renderHPA(*cfg, rel, ns, d.Labels[LabelComponent])); err != nil {
				return err
			}
		}
	}
	for _, d := range stable {
		if err := t.Wait(ctx, ns, d.Name); err != nil {
			return err
		}
	}
	return t.deleteCanaries(ctx, ns, rel.Name)
}

// restoreTemplate is the pod template that runs rel on d (see restore).
func (t *Target) restoreTemplate(ctx context.Context, d *appsv1.Deployment, rel Release) (corev1.PodTemplateSpec, error) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return corev1.PodTemplateSpec{}, fmt.Errorf("deployment %s/%s: selector: %w", d.Namespace, d.Name, err)
	}
	list, err := t.Client.AppsV1().ReplicaSets(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return corev1.PodTemplateSpec{}, fmt.Errorf("replica sets of %s/%s: %w", d.Namespace, d.Name, classify(err))
	}
	var best *appsv1.ReplicaSet
	bestRev := -1
	for i := range list.Items {
		rs := &list.Items[i]
		if c := metav1.GetControllerOf(rs); c == nil || c.UID != d.UID || modelImage(rs.Spec.Template.Spec) != rel.Image || modelVolume(rs.Spec.Template.Spec) != rel.Model {
			continue
		}
		if rev, err := strconv.Atoi(rs.Annotations[revisionAnnotation]); err == nil && rev > bestRev {
			best, bestRev = rs, rev
		}
	}
	if best != nil {
		tmpl := *best.Spec.Template.DeepCopy()
		delete(tmpl.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
		return tmpl, nil
	}
	t.logf("deployment %s: no replica set ran %s any more; restoring it onto the live pod template", d.Name, rel.describe())
	tmpl := *d.Spec.Template.DeepCopy()
	for i := range tmpl.Spec.Containers {
		if tmpl.Spec.Containers[i].Name == ContainerName {
			tmpl.Spec.Containers[i].Image = rel.Image
		}
	}
	setModelVolume(&tmpl.Spec, rel.Model)
	if tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	if tmpl.Annotations == nil {
		tmpl.Annotations = map[string]string{}
	}
	tmpl.Labels[LabelVersion] = labelVersion(rel.Version)
	tmpl.Annotations[AnnotationVersion] = rel.Version
	return tmpl, nil
}

// restored is the apply body that puts tmpl onto d with replicas: d's
// live spec otherwise, and modelci's version marks for rel.
func restored(d *appsv1.Deployment, rel Release, tmpl corev1.PodTemplateSpec, replicas int32) *appsv1.Deployment {
	lbls := maps.Clone(d.Labels)
	if lbls == nil {
		lbls = map[string]string{}
	}
	lbls[LabelVersion] = labelVersion(rel.Version)
	spec := *d.Spec.DeepCopy()
	spec.Template, spec.Replicas = tmpl, ptr(replicas)
	// A rollback must not fail by the deadline of the release it leaves
	// (a broken release's may be short); the next deploy sets its own.
	if spec.ProgressDeadlineSeconds == nil || *spec.ProgressDeadlineSeconds < restoreDeadline {
		spec.ProgressDeadlineSeconds = ptr(restoreDeadline)
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace, Labels: lbls, Annotations: map[string]string{AnnotationVersion: rel.Version}},
		Spec:       spec,
	}
}

// modelImage is the image of the model container of a pod spec.
func modelImage(s corev1.PodSpec) string {
	for _, c := range s.Containers {
		if c.Name == ContainerName {
			return c.Image
		}
	}
	return ""
}

// LiveModel is the ModelPack artifact the app's stable Deployments in ns
// mount now (model_source: volume): what the environment serves. It is
// empty when they mount none (the model is in their image, LiveImage) or
// the app has no Deployment there; Deployments that disagree are an error.
func (t *Target) LiveModel(ctx context.Context, ns, app string) (string, error) {
	deps, err := t.appDeployments(ctx, ns, app, TrackStable)
	if err != nil {
		return "", err
	}
	model := ""
	for i, d := range deps {
		m := modelVolume(d.Spec.Template.Spec)
		if i > 0 && m != model {
			return "", fmt.Errorf("deployments of %s in %s mount different models (%q, %q)", app, ns, model, m)
		}
		model = m
	}
	return model, nil
}

// LiveImage is the image the app's stable Deployments in ns run now: what
// the environment actually serves, whatever its history says. It is empty
// when the app has no Deployment there; Deployments that disagree are an
// error.
func (t *Target) LiveImage(ctx context.Context, ns, app string) (string, error) {
	deps, err := t.appDeployments(ctx, ns, app, TrackStable)
	if err != nil {
		return "", err
	}
	image := ""
	for _, d := range deps {
		img := modelImage(d.Spec.Template.Spec)
		switch {
		case img == "":
			return "", fmt.Errorf("deployment %s/%s has no %q container", ns, d.Name, ContainerName)
		case image != "" && img != image:
			return "", fmt.Errorf("deployments of %s in %s run different images (%s, %s)", app, ns, image, img)
		}
		image = img
	}
	return image, nil
}
