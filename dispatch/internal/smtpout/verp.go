package smtpout

import (
	"strings"

	"herald/shared/event"
)

// The VERP envelope senders (Config.ReturnPath) are event.ReturnPath's,
// the codec ingest reads the bounces with.

// parseDeliveryKey reads the ledger key a provider.Message carries,
// tenant/job/channel/customer as event.DeliveryKey.String writes it. Only
// the customer id may contain a slash, and it comes last.
func parseDeliveryKey(s string) (event.DeliveryKey, bool) {
	parts := strings.SplitN(s, "/", 4)
	if len(parts) != 4 || parts[0] == "" || parts[1] == "" || parts[3] == "" {
		return event.DeliveryKey{}, false
	}
	return event.DeliveryKey{Tenant: parts[0], Job: parts[1], Channel: event.Channel(parts[2]), Customer: parts[3]}, true
}
