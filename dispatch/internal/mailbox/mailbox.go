// Package mailbox sorts recipients by the mailbox provider that receives
// their mail. Large receivers (Gmail, Yahoo, Outlook) each throttle senders
// on their own terms, so dispatch keeps a queue and a rate per receiver:
// when one defers, only its traffic slows.
package mailbox

import (
	"fmt"
	"sort"
	"strings"
)

// Other is the receiver of every domain no rule names.
const Other = "other"

// Classifier maps recipient domains to receivers.
type Classifier struct {
	exact    map[string]string
	suffixes []rule
}

type rule struct{ suffix, receiver string }

// Default lists the consumer domains of the largest receivers.
var Default = map[string][]string{
	"gmail":   {"gmail.com", "googlemail.com"},
	"yahoo":   {"yahoo.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de", "ymail.com", "rocketmail.com", "aol.com", "aim.com"},
	"outlook": {"outlook.com", "hotmail.com", "hotmail.co.uk", "hotmail.fr", "live.com", "msn.com"},
	"apple":   {"icloud.com", "me.com", "mac.com"},
}

// New returns a classifier for rules: receiver → domains. A domain given
// as ".example.org" matches it and every subdomain.
func New(rules map[string][]string) *Classifier {
	c := &Classifier{exact: map[string]string{}}
	for receiver, domains := range rules {
		for _, d := range domains {
			d = strings.ToLower(strings.TrimSpace(d))
			if strings.HasPrefix(d, ".") {
				c.suffixes = append(c.suffixes, rule{d, receiver})
				c.exact[d[1:]] = receiver
			} else {
				c.exact[d] = receiver
			}
		}
	}
	// Longest suffix first, so the most specific rule wins.
	sort.Slice(c.suffixes, func(i, j int) bool { return len(c.suffixes[i].suffix) > len(c.suffixes[j].suffix) })
	return c
}

// Of returns the receiver of an address.
func (c *Classifier) Of(address string) string {
	at := strings.LastIndexByte(address, '@')
	domain := strings.ToLower(address[at+1:])
	if r, ok := c.exact[domain]; ok {
		return r
	}
	for _, s := range c.suffixes {
		if strings.HasSuffix(domain, s.suffix) {
			return s.receiver
		}
	}
	return Other
}

// Parse reads rules written "gmail=gmail.com,googlemail.com;yahoo=yahoo.com"
// and merges them over Default.
func Parse(spec string) (map[string][]string, error) {
	rules := map[string][]string{}
	for k, v := range Default {
		rules[k] = append([]string(nil), v...)
	}
	for _, part := range strings.Split(spec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, domains, ok := strings.Cut(part, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.TrimSpace(domains) == "" {
			return nil, fmt.Errorf("mailbox rule %q: want receiver=domain,domain", part)
		}
		for _, d := range strings.Split(domains, ",") {
			if d = strings.TrimSpace(d); d != "" {
				rules[name] = append(rules[name], d)
			}
		}
	}
	return rules, nil
}

// ParseRates reads "gmail=500,yahoo=300" into receiver → sends per second.
func ParseRates(spec string) (map[string]float64, error) {
	rates := map[string]float64{}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, v, ok := strings.Cut(part, "=")
		var rate float64
		if _, err := fmt.Sscanf(strings.TrimSpace(v), "%g", &rate); !ok || err != nil || rate <= 0 {
			return nil, fmt.Errorf("mailbox rate %q: want receiver=positive number", part)
		}
		rates[strings.TrimSpace(name)] = rate
	}
	return rates, nil
}
