package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Segment is a filter over customer attributes: exactly one of All, Any,
// Not or a comparison (Attribute with Op and Value or Values). It is
// compiled to a SQL/JSON path predicate that the planner applies to
// customers.attributes with @@, so a segment of millions streams like any
// other audience. A comparison matches only customers that have the
// attribute; on an attribute holding an array, eq matches if any element
// equals the value.
type Segment struct {
	All       []Segment       `json:"all,omitempty"`
	Any       []Segment       `json:"any,omitempty"`
	Not       *Segment        `json:"not,omitempty"`
	Attribute string          `json:"attribute,omitempty"`
	Op        string          `json:"op,omitempty"`
	Value     json.RawMessage `json:"value,omitempty"`
	Values    []any           `json:"values,omitempty"`
}

// Bounds of a segment.
const (
	maxSegmentDepth      = 5
	maxSegmentConditions = 100
)

var attributeSegment = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

var segmentOps = map[string]string{"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}

// Compile returns the segment as a jsonpath predicate.
func (s *Segment) Compile() (string, error) {
	n := 0
	return s.compile(0, &n)
}

func (s *Segment) compile(depth int, n *int) (string, error) {
	*n++
	if depth > maxSegmentDepth || *n > maxSegmentConditions {
		return "", fmt.Errorf("more than %d levels or %d conditions", maxSegmentDepth, maxSegmentConditions)
	}
	kinds := 0
	for _, set := range []bool{s.All != nil, s.Any != nil, s.Not != nil, s.Attribute != "" || s.Op != ""} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return "", errors.New("each condition needs exactly one of all, any, not, or attribute with op")
	}
	join := func(list []Segment, op string) (string, error) {
		if len(list) == 0 {
			return "", errors.New("all and any need at least one condition")
		}
		parts := make([]string, len(list))
		for i := range list {
			p, err := list[i].compile(depth+1, n)
			if err != nil {
				return "", err
			}
			parts[i] = p
		}
		return "(" + strings.Join(parts, " "+op+" ") + ")", nil
	}
	switch {
	case s.All != nil:
		return join(s.All, "&&")
	case s.Any != nil:
		return join(s.Any, "||")
	case s.Not != nil:
		p, err := s.Not.compile(depth+1, n)
		if err != nil {
			return "", err
		}
		return "!(" + p + ")", nil
	}
	path, err := attributePath(s.Attribute)
	if err != nil {
		return "", err
	}
	switch s.Op {
	case "exists":
		return "exists(" + path + ")", nil
	case "not_exists":
		return "!exists(" + path + ")", nil
	case "in":
		if len(s.Values) == 0 || len(s.Values) > 100 {
			return "", errors.New("in needs 1 to 100 values")
		}
		parts := make([]string, len(s.Values))
		for i, v := range s.Values {
			lit, err := literal(v)
			if err != nil {
				return "", err
			}
			parts[i] = path + " == " + lit
		}
		return "(" + strings.Join(parts, " || ") + ")", nil
	}
	op, ok := segmentOps[s.Op]
	if !ok {
		return "", fmt.Errorf("op %q is not one of eq, ne, lt, le, gt, ge, in, exists, not_exists", s.Op)
	}
	var v any
	if len(s.Value) == 0 || json.Unmarshal(s.Value, &v) != nil {
		return "", fmt.Errorf("op %s needs a value", s.Op)
	}
	lit, err := literal(v)
	if err != nil {
		return "", err
	}
	if _, isNum := v.(float64); !isNum && op != "==" && op != "!=" {
		if _, isStr := v.(string); !isStr {
			return "", fmt.Errorf("op %s compares numbers or strings", s.Op)
		}
	}
	return path + " " + op + " " + lit, nil
}

// attributePath turns "a.b" into $."a"."b".
func attributePath(attr string) (string, error) {
	parts := strings.Split(attr, ".")
	if len(parts) > 5 {
		return "", errors.New("attribute paths have at most 5 parts")
	}
	var b strings.Builder
	b.WriteString("$")
	for _, p := range parts {
		if !attributeSegment.MatchString(p) {
			return "", fmt.Errorf("attribute %q: each part must be 1-64 letters, digits, _ or -", attr)
		}
		b.WriteString(`."` + p + `"`)
	}
	return b.String(), nil
}

// literal renders a JSON scalar as a jsonpath literal: strings with JSON
// escapes (which jsonpath shares), numbers, booleans, null.
func literal(v any) (string, error) {
	switch v := v.(type) {
	case string:
		if len(v) > 1000 {
			return "", errors.New("string values are at most 1000 bytes")
		}
		b, _ := json.Marshal(v)
		return string(b), nil
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	case bool:
		return strconv.FormatBool(v), nil
	case nil:
		return "null", nil
	default:
		return "", errors.New("values must be strings, numbers, booleans or null")
	}
}
