package webhook

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/modelguard/modelguard/policy"
)

// ConfigStore holds the GuardConfig in use and reloads it when its file changes. An invalid
// new file never replaces a valid one: the last good config stays, the error is logged with
// its file, line and field, and modelguard_config_valid drops to 0. The server never runs
// without a valid config: NewConfigStore fails when the first read is invalid.
type ConfigStore struct {
	path     string
	current  atomic.Pointer[policy.GuardConfig]
	log      *slog.Logger
	metrics  *Metrics
	mu       sync.Mutex
	lastRaw  []byte // the config in use, as read
	rejected []byte // the last invalid file, reported once rather than at every poll
	onChange []func(old, cur *policy.GuardConfig)
}

// NewConfigStore loads path (empty: the built-in default config).
func NewConfigStore(path string, log *slog.Logger, m *Metrics) (*ConfigStore, error) {
	s := &ConfigStore{path: path, log: log, metrics: m}
	if path == "" {
		s.current.Store(policy.DefaultConfig())
		m.ConfigValid.Set(1)
		return s, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading GuardConfig: %w", err)
	}
	cfg, err := policy.ParseConfig(path, data)
	if err != nil {
		return nil, err
	}
	s.current.Store(cfg)
	s.lastRaw = data
	m.ConfigValid.Set(1)
	return s, nil
}

// Get returns the config in use.
func (s *ConfigStore) Get() *policy.GuardConfig { return s.current.Load() }

// OnChange registers fn to run after a new config replaced the old one.
func (s *ConfigStore) OnChange(fn func(old, cur *policy.GuardConfig)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onChange = append(s.onChange, fn)
}

// Reload rereads the file; it is what the watcher calls, exported for tests.
func (s *ConfigStore) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := os.ReadFile(s.path)
	if err != nil {
		return s.reject(fmt.Errorf("reading GuardConfig: %w", err))
	}
	if bytes.Equal(data, s.lastRaw) {
		s.rejected = nil // an invalid change was reverted: the file is the config in use again
		s.metrics.ConfigValid.Set(1)
		return nil
	}
	if bytes.Equal(data, s.rejected) {
		return nil
	}
	cfg, err := policy.ParseConfig(s.path, data)
	if err != nil {
		s.rejected = data
		return s.reject(err)
	}
	s.rejected = nil
	old := s.current.Swap(cfg)
	s.lastRaw = data
	s.metrics.ConfigValid.Set(1)
	s.metrics.ConfigReloads.WithLabelValues("ok").Inc()
	s.log.Info("GuardConfig reloaded", slog.String("file", s.path))
	for _, fn := range s.onChange {
		fn(old, cfg)
	}
	return nil
}

func (s *ConfigStore) reject(err error) error {
	s.metrics.ConfigValid.Set(0)
	s.metrics.ConfigReloads.WithLabelValues("invalid").Inc()
	s.log.Error("GuardConfig change rejected: keeping the last valid config", slog.String("file", s.path), slog.String("error", err.Error()))
	return err
}

// Watch reloads the file whenever it or its directory changes (a ConfigMap volume swaps a
// symlink), and every interval as a fallback for missed events, until ctx ends. It is a
// manager Runnable.
func (s *ConfigStore) Watch(ctx context.Context, interval time.Duration) error {
	if s.path == "" {
		<-ctx.Done()
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching GuardConfig: %w", err)
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(s.path)); err != nil {
		return fmt.Errorf("watching GuardConfig directory: %w", err)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.Events:
			_ = s.Reload() // errors are logged and counted; the last good config stays
		case <-tick.C:
			_ = s.Reload()
		case err := <-w.Errors:
			s.log.Error("GuardConfig watch error", slog.String("error", err.Error()))
		}
	}
}
