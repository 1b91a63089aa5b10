// Package config builds a service's typed configuration from command-line
// flags whose defaults come from environment variables, so the same binary
// reads `-database-url` on a laptop and HERALD_DATABASE_URL in a pod.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Set declares flags bound to fields of a config struct. Parse errors in
// environment defaults are collected and reported by Parse, so a bad
// variable fails the start with a clear message instead of being ignored.
type Set struct {
	fs      *flag.FlagSet
	getenv  func(string) string
	errs    []error
	secrets map[string]bool
	envs    map[string]string
}

// New returns a Set for the program name that reads defaults through getenv.
func New(name string, getenv func(string) string) *Set {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &Set{fs: fs, getenv: getenv, secrets: map[string]bool{}, envs: map[string]string{}}
}

func (s *Set) env(name, env string) (string, bool) {
	s.envs[name] = env
	v := s.getenv(env)
	return v, v != ""
}

func (s *Set) usage(usage, env string) string { return usage + " (env " + env + ")" }

// String binds a string flag.
func (s *Set) String(p *string, name, env, def, usage string) {
	if v, ok := s.env(name, env); ok {
		def = v
	}
	s.fs.StringVar(p, name, def, s.usage(usage, env))
}

// Secret binds a string flag whose value is masked when the config is logged.
func (s *Set) Secret(p *string, name, env, def, usage string) {
	s.secrets[name] = true
	s.String(p, name, env, def, usage)
}

// Int binds an int flag.
func (s *Set) Int(p *int, name, env string, def int, usage string) {
	if v, ok := s.env(name, env); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s=%q: not an integer", env, v))
		} else {
			def = n
		}
	}
	s.fs.IntVar(p, name, def, s.usage(usage, env))
}

// Float binds a float64 flag.
func (s *Set) Float(p *float64, name, env string, def float64, usage string) {
	if v, ok := s.env(name, env); ok {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s=%q: not a number", env, v))
		} else {
			def = f
		}
	}
	s.fs.Float64Var(p, name, def, s.usage(usage, env))
}

// Duration binds a duration flag ("30s", "4h").
func (s *Set) Duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	if v, ok := s.env(name, env); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s=%q: not a duration", env, v))
		} else {
			def = d
		}
	}
	s.fs.DurationVar(p, name, def, s.usage(usage, env))
}

// Bool binds a boolean flag.
func (s *Set) Bool(p *bool, name, env string, def bool, usage string) {
	if v, ok := s.env(name, env); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s=%q: not a boolean", env, v))
		} else {
			def = b
		}
	}
	s.fs.BoolVar(p, name, def, s.usage(usage, env))
}

// Parse parses args and reports every bad flag or environment variable.
func (s *Set) Parse(args []string) error {
	if err := s.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return fmt.Errorf("usage of %s:\n%s", s.fs.Name(), s.Usage())
		}
		return err
	}
	if s.fs.NArg() > 0 {
		s.errs = append(s.errs, fmt.Errorf("unexpected arguments %q", s.fs.Args()))
	}
	return errors.Join(s.errs...)
}

// Usage lists the flags with their environment variables and defaults.
func (s *Set) Usage() string {
	var b strings.Builder
	s.fs.SetOutput(&b)
	s.fs.PrintDefaults()
	s.fs.SetOutput(io.Discard)
	return b.String()
}

// LogValue reports every flag's effective value for the start-up log line,
// with secrets and the passwords in URLs masked.
func (s *Set) LogValue() slog.Value {
	var attrs []slog.Attr
	s.fs.VisitAll(func(f *flag.Flag) {
		v := f.Value.String()
		switch {
		case s.secrets[f.Name] && v != "":
			v = "********"
		case strings.Contains(v, "://"):
			if u, err := url.Parse(v); err == nil && u.User != nil {
				if _, has := u.User.Password(); has {
					u.User = url.UserPassword(u.User.Username(), "********")
					v = u.String()
				}
			}
		}
		attrs = append(attrs, slog.String(strings.ReplaceAll(f.Name, "-", "_"), v))
	})
	sort.Slice(attrs, func(i, j int) bool { return attrs[i].Key < attrs[j].Key })
	return slog.GroupValue(attrs...)
}

// ValueOrFile is a secret given either as a value (its flag or environment
// variable) or as a file (a mounted Secret), never both: the value, or the
// file's content without the line end an editor or echo leaves. flag names
// the setting in errors (-flag and -flag-file); no error holds the secret.
func ValueOrFile(flag, value, file string, readFile func(string) ([]byte, error)) (string, error) {
	switch {
	case file == "":
		return value, nil
	case value != "":
		return "", fmt.Errorf("give -%s or -%s-file, not both", flag, flag)
	}
	b, err := readFile(file)
	if err != nil {
		return "", fmt.Errorf("read -%s-file: %w", flag, err)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("-%s-file %s is empty", flag, file)
	}
	return v, nil
}
