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

// Command images builds the project's container images without a Docker engine ('make images')
// and pushes them ('make images-push'):
//
//	go run ./hack/images build -out bin/images -version 0.1.0 \
//	    -manager IMG -receiver RECEIVER_IMG -pause PAUSE_IMG
//	go run ./hack/images push -registry host[:port]/path bin/images/manager.tar bin/images/receiver.tar
//
// build compiles ./cmd/manager, ./cmd/receiver and ./hack/images/pause for linux/amd64 and
// linux/arm64 as 'make build' does (CGO_ENABLED=0, -trimpath), assembles each image as the
// Dockerfile describes it (package imagebuild) and writes <out>/manager.tar, receiver.tar and
// pause.tar: OCI image layouts, each holding one multi-platform index named with the image
// reference. The commit (-revision) and its time (-epoch, else SOURCE_DATE_EPOCH, else the
// commit time) are the only inputs besides the sources, so a commit always gives the same
// digests. It runs from the repository root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/segment-webhook-operator/segment-webhook-operator/hack/images/imagebuild"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: images build|push [flags]")
	}
	switch args[0] {
	case "build":
		return build(args[1:])
	case "push":
		return push(args[1:])
	}
	return fmt.Errorf("unknown command %q (build or push)", args[0])
}

// image is one image to build: its spec, the package of its binary and its reference.
type image struct {
	spec imagebuild.Spec
	pkg  string
	ref  string
}

func build(args []string) error {
	start := time.Now()
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	out := fs.String("out", "bin/images", "directory for manager.tar, receiver.tar and pause.tar")
	version := fs.String("version", "", "org.opencontainers.image.version")
	revision := fs.String("revision", "", "org.opencontainers.image.revision (default: the git commit, -dirty if the tree has changes)")
	epoch := fs.String("epoch", os.Getenv("SOURCE_DATE_EPOCH"), "creation time, seconds since 1970 (default: SOURCE_DATE_EPOCH, else the commit time)")
	arches := fs.String("arch", "", "comma-separated architectures to build (default: all of the release's; make e2e builds only this machine's)")
	images := []*image{
		{spec: imagebuild.Manager, pkg: "./cmd/manager"},
		{spec: imagebuild.Receiver, pkg: "./cmd/receiver"},
		{spec: imagebuild.Pause, pkg: "./hack/images/pause"},
	}
	for _, img := range images {
		fs.StringVar(&img.ref, img.spec.Binary, "", "the "+img.spec.Binary+" image reference (name:tag)")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, img := range images {
		if img.ref == "" {
			return fmt.Errorf("-%s: no image reference", img.spec.Binary)
		}
	}
	meta, err := metadata(*version, *revision, *epoch)
	if err != nil {
		return err
	}

	work, err := os.MkdirTemp("", "images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	binaries := map[string]map[string]string{} // binary -> GOARCH -> file
	for _, p := range imagebuild.Platforms {
		if *arches != "" && !slices.Contains(strings.Split(*arches, ","), p.Architecture) {
			continue
		}
		t := time.Now()
		dir := filepath.Join(work, p.OS+"_"+p.Architecture)
		pkgs := []string{}
		for _, img := range images {
			pkgs = append(pkgs, img.pkg)
		}
		// The command of 'make build', for the target platform, stamped with the image's version
		// and revision (--version); one go build for the binaries shares their packages' compilation.
		cmd := exec.Command("go", append([]string{"build", "-trimpath", "-ldflags", ldflags(meta), "-o", dir + "/"}, pkgs...)...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build for %s/%s: %w", p.OS, p.Architecture, err)
		}
		for _, img := range images {
			if binaries[img.spec.Binary] == nil {
				binaries[img.spec.Binary] = map[string]string{}
			}
			binaries[img.spec.Binary][p.Architecture] = filepath.Join(dir, filepath.Base(img.pkg))
		}
		fmt.Printf("go build %s/%s: %s\n", p.OS, p.Architecture, time.Since(t).Round(100*time.Millisecond))
	}

	zoneinfo, err := imagebuild.ZoneinfoZip()
	if err != nil {
		return err
	}
	base, err := imagebuild.BaseLayer(zoneinfo)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	digests := make([]v1.Hash, len(images))
	var g errgroup.Group
	for i, img := range images {
		g.Go(func() error {
			var b v1.Layer
			if img.spec.Base {
				b = base
			}
			idx, err := img.spec.Index(binaries[img.spec.Binary], b, meta)
			if err != nil {
				return err
			}
			if digests[i], err = idx.Digest(); err != nil {
				return err
			}
			return imagebuild.WriteArchive(filepath.Join(*out, img.spec.Binary+".tar"), idx, img.ref)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	fmt.Printf("revision %s, version %s, created %s\n", meta.Revision, meta.Version, meta.Created.Format(time.RFC3339))
	for i, img := range images {
		file := filepath.Join(*out, img.spec.Binary+".tar")
		info, err := os.Stat(file)
		if err != nil {
			return err
		}
		fmt.Printf("%-24s %6.1f MiB  %s  %s\n", file, float64(info.Size())/(1<<20), digests[i], img.ref)
	}
	fmt.Printf("images built in %s\n", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// ldflags stamps a binary's --version with the image's version and revision, as make build does.
func ldflags(m imagebuild.Meta) string {
	const pkg = "github.com/segment-webhook-operator/segment-webhook-operator/internal/version"
	return "-X " + pkg + ".Version=" + m.Version + " -X " + pkg + ".Commit=" + m.Revision
}

// metadata fills in the revision and the creation time from git where they are not given.
func metadata(version, revision, epoch string) (imagebuild.Meta, error) {
	m := imagebuild.Meta{Version: version, Revision: revision}
	if m.Revision == "" {
		head, err := git("rev-parse", "HEAD")
		if err != nil {
			return m, err
		}
		m.Revision = head
		// Tracked changes make the image differ from the commit; say so.
		if status, err := git("status", "--porcelain", "--untracked-files=no"); err != nil {
			return m, err
		} else if status != "" {
			m.Revision += "-dirty"
		}
	}
	if epoch == "" {
		var err error
		if epoch, err = git("log", "-1", "--format=%ct"); err != nil {
			return m, err
		}
	}
	secs, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return m, fmt.Errorf("epoch %q: %w", epoch, err)
	}
	m.Created = time.Unix(secs, 0).UTC()
	return m, nil
}

func git(args ...string) (string, error) {
	out, err := exec.Command("git", args...).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			err = fmt.Errorf("%w: %s", err, exit.Stderr)
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

func push(args []string) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	registry := fs.String("registry", "", "where to push: host[:port]/path; each image keeps its repository's last element and tag")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("push: no archives given")
	}
	for _, file := range fs.Args() {
		if err := pushArchive(*registry, file); err != nil {
			return err
		}
	}
	return nil
}

func pushArchive(registry, file string) error {
	a, err := imagebuild.ReadArchive(file)
	if err != nil {
		return err
	}
	defer a.Close()
	dst, err := imagebuild.PushRef(registry, a.Ref)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if err := imagebuild.Push(context.Background(), dst, a.Index); err != nil {
		return fmt.Errorf("pushing %s to %s: %w", file, dst, err)
	}
	d, err := a.Index.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("pushed %s: %s@%s\n", file, dst, d)
	return nil
}
