package monitoring

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Selector is one vector selector of a PromQL expression: the series name it
// selects and the label names it matches on.
type Selector struct {
	Metric string
	Labels []string
}

// Selectors lists the vector selectors of a PromQL expression, in order. It
// is a reader, not a validator: it knows PromQL's lexical shape well enough to
// tell a series name from a function, an aggregation, a keyword or a label
// name in a grouping clause, and it accepts Grafana's template variables where
// Grafana allows them (inside strings and range brackets, such as
// [$__rate_interval]). Pulling in Prometheus's own parser would add the whole
// Prometheus module to Herald's build for this one test helper.
//
// A selector written without a metric name ({__name__="x"}) is an error, so
// that every series an expression reads is visible to the caller.
func Selectors(expr string) ([]Selector, error) {
	l := lexer{src: expr}
	var out []Selector
	for {
		l.skipSpace()
		if l.done() {
			return out, nil
		}
		c := l.peek()
		switch {
		case c == '#':
			for !l.done() && l.peek() != '\n' {
				l.pos++
			}
		case c == '"' || c == '\'' || c == '`':
			if _, err := l.str(); err != nil {
				return nil, err
			}
		case c == '[':
			// A range or subquery: durations and Grafana interval variables.
			end := strings.IndexByte(l.src[l.pos:], ']')
			if end < 0 {
				return nil, fmt.Errorf("unclosed [ at offset %d", l.pos)
			}
			l.pos += end + 1
		case c == '{':
			return nil, fmt.Errorf("selector without a metric name at offset %d", l.pos)
		case c == '$':
			return nil, fmt.Errorf("template variable outside a string or range at offset %d", l.pos)
		case isDigit(c) || c == '.':
			// Numbers and durations (0.99, 1e3, 0x1f, 5m after offset).
			for !l.done() && (isIdentChar(l.peek()) || l.peek() == '.') {
				l.pos++
			}
		case isIdentStart(c):
			word := l.ident()
			l.skipSpace()
			next := byte(0)
			if !l.done() {
				next = l.peek()
			}
			switch {
			case isGrouping(word):
				if next == '(' {
					if err := l.skipParens(); err != nil {
						return nil, err
					}
				}
			case isKeyword(word):
			case next == '(':
				// A function call; its arguments are read by the loop.
			default:
				sel := Selector{Metric: word}
				if next == '{' {
					labels, err := l.matchers()
					if err != nil {
						return nil, fmt.Errorf("%s: %w", word, err)
					}
					sel.Labels = labels
				}
				out = append(out, sel)
			}
		default:
			l.pos++ // operators, commas, parentheses
		}
	}
}

// isGrouping reports whether word takes an optional parenthesised list of
// label names after it.
func isGrouping(word string) bool {
	switch word {
	case "by", "without", "on", "ignoring", "group_left", "group_right":
		return true
	}
	return false
}

// isKeyword reports whether word is a PromQL keyword or aggregation operator,
// which never names a series.
func isKeyword(word string) bool {
	switch word {
	case "and", "or", "unless", "atan2", "bool", "offset", "inf", "nan",
		"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
		"count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio":
		return true
	}
	return false
}

type lexer struct {
	src string
	pos int
}

func (l *lexer) done() bool { return l.pos >= len(l.src) }
func (l *lexer) peek() byte { return l.src[l.pos] }

func (l *lexer) skipSpace() {
	for !l.done() && strings.IndexByte(" \t\r\n", l.peek()) >= 0 {
		l.pos++
	}
}

func (l *lexer) ident() string {
	start := l.pos
	for !l.done() && isIdentChar(l.peek()) {
		l.pos++
	}
	return l.src[start:l.pos]
}

// str reads a quoted string starting at the current position.
func (l *lexer) str() (string, error) {
	start, quote := l.pos, l.peek()
	l.pos++
	for !l.done() {
		c := l.peek()
		l.pos++
		switch {
		case c == '\\' && quote != '`':
			l.pos++
		case c == quote:
			return l.src[start+1 : l.pos-1], nil
		}
	}
	return "", fmt.Errorf("unclosed string at offset %d", start)
}

// skipParens skips a parenthesised list of label names.
func (l *lexer) skipParens() error {
	end := strings.IndexByte(l.src[l.pos:], ')')
	if end < 0 {
		return fmt.Errorf("unclosed ( at offset %d", l.pos)
	}
	l.pos += end + 1
	return nil
}

// matchers reads {name op "value", ...} and returns the label names.
func (l *lexer) matchers() ([]string, error) {
	l.pos++ // {
	var names []string
	for {
		l.skipSpace()
		if l.done() {
			return nil, fmt.Errorf("unclosed {")
		}
		if l.peek() == '}' {
			l.pos++
			return names, nil
		}
		if !isIdentStart(l.peek()) {
			return nil, fmt.Errorf("label name expected at offset %d", l.pos)
		}
		names = append(names, l.ident())
		l.skipSpace()
		op := ""
		for !l.done() && strings.IndexByte("=!~", l.peek()) >= 0 {
			op += string(l.peek())
			l.pos++
		}
		if op != "=" && op != "!=" && op != "=~" && op != "!~" {
			return nil, fmt.Errorf("matcher operator expected after %s, got %q", names[len(names)-1], op)
		}
		l.skipSpace()
		if l.done() || strings.IndexByte("\"'`", l.peek()) < 0 {
			return nil, fmt.Errorf("string expected after %s%s", names[len(names)-1], op)
		}
		if _, err := l.str(); err != nil {
			return nil, err
		}
		l.skipSpace()
		if !l.done() && l.peek() == ',' {
			l.pos++
		}
	}
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || c == ':' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
func isIdentChar(c byte) bool  { return isIdentStart(c) || isDigit(c) }

// Check reads expr and returns an error naming every selector that reads a
// series not in known (a map from series name to the labels it carries, as
// Series returns), or matches on a label that series does not carry.
func Check(expr string, known map[string][]string) error {
	sels, err := Selectors(expr)
	if err != nil {
		return err
	}
	var problems []string
	for _, s := range sels {
		labels, ok := known[s.Metric]
		if !ok {
			problems = append(problems, fmt.Sprintf("unknown series %s", s.Metric))
			continue
		}
		for _, l := range s.Labels {
			if !slices.Contains(labels, l) {
				problems = append(problems, fmt.Sprintf("%s has no label %s", s.Metric, l))
			}
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}
