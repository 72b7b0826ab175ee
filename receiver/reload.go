package receiver

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sync/semaphore"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// reloadDebounce lets a burst of file events (Kubernetes' ..data swap is several) settle first.
const reloadDebounce = 100 * time.Millisecond

// Reload reads the config and every secret file it names and, if anything changed, swaps in a
// new pipeline. On any error the running pipeline stays, and the error is logged and counted.
// Requests in flight finish on the pipeline they started with.
func (s *Server) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()

	data, err := os.ReadFile(s.configPath)
	if err != nil {
		return s.reloadFailed("read:"+err.Error(), fmt.Errorf("reading config: %w", err))
	}
	cfg, err := config.Parse(data)
	if err != nil {
		return s.reloadFailed(fingerprint(data, nil, nil), err)
	}
	files := map[string][]byte{}
	var paths []string
	for _, path := range cfg.Files() {
		secret, err := readSecretFile(path)
		if err != nil {
			// The error names the path, never the content.
			return s.reloadFailed("read:"+err.Error(), fmt.Errorf("reading secret file: %w", err))
		}
		files[path] = secret
		paths = append(paths, path)
	}
	key := fingerprint(data, paths, files)
	if key == s.loadedKey && s.current.Load() != nil {
		s.failedKey = "" // back to the good files: a later bad file is news again
		return nil
	}
	if key == s.failedKey {
		return fmt.Errorf("config unchanged since it was refused")
	}
	if err := s.fitsMemoryBudget(cfg.Limits); err != nil {
		return s.reloadFailed(key, err)
	}
	p, err := buildPipeline(cfg, files, s.dedupe, s.metrics, s.log)
	if err != nil {
		return s.reloadFailed(key, err)
	}
	if s.bodies == nil {
		// Sized before the pipeline is stored: requests use it only once they hold a pipeline.
		s.bodyBudget = cfg.Limits.MaxBufferedBytes
		s.bodies = semaphore.NewWeighted(s.bodyBudget)
	}
	old := s.current.Swap(p)
	s.dedupe.retain(identities(cfg))
	if old != nil {
		old.retire()
	}
	s.loadedKey, s.failedKey = key, ""
	s.metrics.configReloads.WithLabelValues("success").Inc()
	s.updateReadyGauge()
	s.log.Info("config loaded", "source", cfg.Source, "targets", len(cfg.Targets),
		"auth", cfg.Authentication.Mode, "validation", cfg.Validation, "deadLetter", cfg.DeadLetter != nil)
	if p.plan != nil {
		s.log.Info("tracking plan loaded", "events", p.plan.plan.Events, "hash", p.plan.plan.Hash,
			"unplannedEvents", p.plan.unplanned, "onViolation", p.plan.onViolation)
	}
	if start := s.startConfig; start != nil && s.opts.Addr == "" && (start.Port != cfg.Port || start.MetricsPort != cfg.MetricsPort) {
		s.log.Warn("port changes take effect on restart", "port", start.Port, "metricsPort", start.MetricsPort)
	}
	return nil
}

// fitsMemoryBudget refuses a reload that raises maxBodyBytes over the memory budget, which is
// sized once, by the first config loaded: every larger body would get 429 until a restart. A
// changed budget only takes effect on restart (the operator rolls the pods when the config changes).
func (s *Server) fitsMemoryBudget(limits config.Limits) error {
	if s.bodies == nil {
		return nil // the first load sizes the budget
	}
	if limits.MaxBodyBytes > s.bodyBudget {
		return fmt.Errorf("limits.maxBodyBytes %d is over the memory budget sized by the first config loaded (maxBufferedBytes %d); restart the receiver to raise it",
			limits.MaxBodyBytes, s.bodyBudget)
	}
	if limits.MaxBufferedBytes != s.bodyBudget {
		s.log.Warn("maxBufferedBytes changes take effect on restart", "maxBufferedBytes", s.bodyBudget)
	}
	return nil
}

// reloadFailed reports a bad config once per distinct problem (the poll would repeat it).
func (s *Server) reloadFailed(key string, err error) error {
	if key != s.failedKey {
		s.failedKey = key
		s.metrics.configReloads.WithLabelValues("failure").Inc()
		level := "keeping the last good config"
		if s.current.Load() == nil {
			level = "no config loaded yet"
		}
		s.log.Error("config reload failed; "+level, "path", s.configPath, "error", err)
	}
	return err
}

// fingerprint identifies a config together with its secrets, without keeping the secrets.
func fingerprint(data []byte, paths []string, files map[string][]byte) string {
	h := sha256.New()
	write := func(b []byte) {
		_ = binary.Write(h, binary.BigEndian, uint64(len(b)))
		h.Write(b)
	}
	write(data)
	for _, p := range paths {
		write([]byte(p))
		write(files[p])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// watch reloads when the config or secret directories change, and polls as a fallback. It
// watches directories, not files: Kubernetes updates a mounted volume by swapping the ..data
// symlink, which a watch on the old file would never see.
func (s *Server) watch(ctx context.Context) {
	watcher, err := fsnotify.NewWatcher()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if err != nil {
		s.log.Warn("file watching unavailable; relying on polling", "error", err)
	} else {
		defer watcher.Close()
		events, errs = watcher.Events, watcher.Errors
	}
	watched := map[string]bool{}
	syncWatches := func() {
		if watcher == nil {
			return
		}
		want := map[string]bool{filepath.Dir(s.configPath): true}
		if p := s.current.Load(); p != nil {
			for _, f := range p.cfg.Files() {
				want[filepath.Dir(f)] = true
			}
		}
		for dir := range want {
			if !watched[dir] {
				if err := watcher.Add(dir); err != nil {
					s.log.Warn("cannot watch directory; relying on polling", "dir", dir, "error", err)
					continue
				}
				watched[dir] = true
			}
		}
		for dir := range watched {
			if !want[dir] {
				_ = watcher.Remove(dir)
				delete(watched, dir)
			}
		}
	}
	syncWatches()
	var poll <-chan time.Time
	if s.opts.PollInterval > 0 {
		ticker := time.NewTicker(s.opts.PollInterval)
		defer ticker.Stop()
		poll = ticker.C
	}
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if debounce == nil {
				debounce = time.After(reloadDebounce)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			s.log.Warn("file watch error", "error", err)
		case <-debounce:
			debounce = nil
			_ = s.Reload()
			syncWatches()
		case <-poll:
			_ = s.Reload()
			syncWatches()
		}
	}
}
