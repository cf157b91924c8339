package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/modelci/modelci/stages/oci"
)

// LatestTag floats: WithLatest moves it on every push, whatever it held.
const LatestTag = "latest"

// Pushed says where an image or index now lives.
type Pushed struct {
	Ref    string // HOST[:PORT]/PATH@sha256:…
	Digest v1.Hash
	// Tags point at Digest after the push (moved or already there).
	Tags []string
}

// Push uploads an image or index to repo (HOST[:PORT]/PATH) by digest: every
// blob (in parallel, skipping those the registry has, retried on transient
// failures), then the manifest by digest, and only then the tags, so a tag
// never points at something incomplete. A tag the repository holds on
// another digest is refused with ErrTagExists before anything is uploaded,
// unless WithAllowOverwrite; on the same digest it is left alone.
//
// The distribution API has no compare-and-swap: a concurrent writer of the
// same tag between our check and our tag PUT wins or loses silently.
func Push(ctx context.Context, t remote.Taggable, repo string, opts ...Option) (Pushed, error) {
	o := makeOptions(opts)
	r, err := o.access.ParseRepository(repo)
	if err != nil {
		return Pushed{}, err
	}
	return push(ctx, t, r, o)
}

func push(ctx context.Context, t remote.Taggable, target oci.Repository, o *options) (Pushed, error) {
	repo := target.Name()
	raw, err := t.RawManifest()
	if err != nil {
		return Pushed{}, fmt.Errorf("push to %s: manifest: %w", repo, err)
	}
	digest, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return Pushed{}, fmt.Errorf("push to %s: %w", repo, err)
	}
	ref := repo.Digest(digest.String())
	tags, err := tagsFor(o)
	if err != nil {
		return Pushed{}, fmt.Errorf("push to %s: %w", repo, err)
	}

	// One puller and one pusher: one ping and token per push, not per request.
	ro := o.remote(ctx)
	puller, err := remote.NewPuller(ro...)
	if err != nil {
		return Pushed{}, fmt.Errorf("push to %s: %w", repo, err)
	}
	move, err := checkTags(ctx, repo, digest, tags, o, puller)
	if err != nil {
		return Pushed{}, err
	}

	if err := pushDigest(ctx, ref, t, o, ro); err != nil {
		return Pushed{}, classify("push "+ref.String(), err)
	}
	if o.deferTags {
		return Pushed{Ref: ref.String(), Digest: digest}, nil
	}
	if len(move) == 0 {
		return Pushed{Ref: ref.String(), Digest: digest, Tags: tags}, nil
	}
	pusher, err := remote.NewPusher(ro...)
	if err != nil {
		return Pushed{}, fmt.Errorf("push to %s: %w", repo, err)
	}
	for _, tag := range move {
		tr := repo.Tag(tag)
		if err := pusher.Put(ctx, tr, t); err != nil {
			return Pushed{}, classify("tag "+tr.String(), err)
		}
	}
	return Pushed{Ref: ref.String(), Digest: digest, Tags: tags}, nil
}

// tagsFor returns the tags to move, validated, without duplicates.
func tagsFor(o *options) ([]string, error) {
	tags := slices.Clone(o.tags)
	if o.latest {
		tags = append(tags, LatestTag)
	}
	slices.Sort(tags)
	tags = slices.Compact(tags)
	for _, tag := range tags {
		if !oci.ValidTag(tag) {
			return nil, fmt.Errorf("tag %q: %w: want [A-Za-z0-9_][A-Za-z0-9._-]{0,127}", tag, ErrBadRef)
		}
	}
	return tags, nil
}

// checkTags returns the tags that must move to digest, refusing with
// ErrTagExists those that point elsewhere (unless overwriting is allowed).
func checkTags(ctx context.Context, repo name.Repository, digest v1.Hash, tags []string, o *options, puller *remote.Puller) ([]string, error) {
	var move []string
	for _, tag := range tags {
		tr := repo.Tag(tag)
		desc, err := puller.Head(ctx, tr)
		switch {
		case err == nil && desc.Digest == digest:
			continue
		case err == nil && tag != LatestTag && !o.allowOverwrite:
			return nil, fmt.Errorf("tag %s: %w: it holds %s, the push is %s (tags are immutable; allow overwrite to move it)", tr, ErrTagExists, desc.Digest, digest)
		case err != nil:
			if err := classify("tag "+tr.String(), err); !errors.Is(err, ErrNotFound) {
				return nil, err
			}
		}
		move = append(move, tag)
	}
	return move, nil
}

// pushDigest uploads t's blobs and manifest under its digest, reporting
// progress when asked.
func pushDigest(ctx context.Context, ref name.Digest, t remote.Taggable, o *options, ro []remote.Option) error {
	if o.progress == nil {
		return remote.Push(ref, t, ro...)
	}
	updates := make(chan v1.Update, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		report(o.progress, ref.Context().String(), totalSize(t), updates)
	}()
	// remote.Push closes updates when it returns.
	err := remote.Push(ref, t, append(ro, remote.WithProgress(updates))...)
	<-done
	return err
}
