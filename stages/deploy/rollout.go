package deploy

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
)

// RolloutStatus decides, as `kubectl rollout status` does, whether d has rolled out. It returns
// done, a progress message, and ErrProgressDeadline when the controller gave up.
func RolloutStatus(d *appsv1.Deployment) (done bool, msg string, err error) {
	if d.Generation > d.Status.ObservedGeneration {
		return false, fmt.Sprintf("deployment %s: waiting for the controller to observe generation %d", d.Name, d.Generation), nil
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			return false, "", fmt.Errorf("deployment %s: %w: %s", d.Name, ErrProgressDeadline, c.Message)
		}
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	switch {
	case s.UpdatedReplicas < want:
		return false, fmt.Sprintf("deployment %s: %d of %d new replicas updated, %d available", d.Name, s.UpdatedReplicas, want, s.AvailableReplicas), nil
	case s.Replicas > s.UpdatedReplicas:
		return false, fmt.Sprintf("deployment %s: %d old replicas pending termination", d.Name, s.Replicas-s.UpdatedReplicas), nil
	case s.AvailableReplicas < s.UpdatedReplicas:
		return false, fmt.Sprintf("deployment %s: %d of %d updated replicas available", d.Name, s.AvailableReplicas, s.UpdatedReplicas), nil
	case s.Replicas > want:
		// Scaled down (a canary step): kubectl would call this done while pods still go.
		return false, fmt.Sprintf("deployment %s: %d of %d replicas still running after scale-down", d.Name, s.Replicas, want), nil
	}
	return true, fmt.Sprintf("deployment %s: rolled out (%d replicas available)", d.Name, s.AvailableReplicas), nil
}

// Wait watches Deployment ns/name until it has rolled out, its progress deadline passes, or
// ctx ends, writing a progress line to t.Log at each change.
func (t *Target) Wait(ctx context.Context, ns, name string) error {
	deps := t.Client.AppsV1().Deployments(ns)
	last := ""
	check := func(d *appsv1.Deployment) (bool, error) {
		done, msg, err := RolloutStatus(d)
		if err != nil {
			return false, err
		}
		if msg != last {
			t.logf("%s", msg)
			last = msg
		}
		return done, nil
	}
	for {
		d, err := deps.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("deployment %s/%s: %w", ns, name, classify(err))
		}
		if done, err := check(d); done || err != nil {
			return err
		}
		w, err := deps.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(), ResourceVersion: d.ResourceVersion})
		if err != nil {
			return fmt.Errorf("watch deployment %s/%s: %w", ns, name, classify(err))
		}
		done, err := t.watchRollout(ctx, w, check)
		w.Stop()
		if done || err != nil {
			return err
		}
		// The watch ended (a server timeout or a compacted resourceVersion): start over.
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("waiting for deployment %s/%s: %w (last: %s)", ns, name, err, last)
		}
	}
}

func (t *Target) watchRollout(ctx context.Context, w watch.Interface, check func(*appsv1.Deployment) (bool, error)) (bool, error) {
	for {
		select {
		case <-ctx.Done():
			return false, nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return false, nil
			}
			switch ev.Type {
			case watch.Deleted:
				d, _ := ev.Object.(*appsv1.Deployment)
				name := ""
				if d != nil {
					name = d.Name
				}
				return false, fmt.Errorf("deployment %s was deleted during the rollout", name)
			case watch.Error:
				return false, nil
			case watch.Added, watch.Modified:
				d, ok := ev.Object.(*appsv1.Deployment)
				if !ok {
					continue
				}
				if done, err := check(d); done || err != nil {
					return done, err
				}
			}
		}
	}
}

// podReady reports whether a pod is Ready.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
