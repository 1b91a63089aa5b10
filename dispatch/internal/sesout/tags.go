package sesout

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"

	"herald/dispatch/internal/provider"
	"herald/shared/event"
)

// Tags are the message tags of m: event.TagTenant and event.TagDelivery,
// encoded by event.DeliveryKey.Tags within SES's rules for a tag value.
// SES copies them into each event it publishes for the message (mail.tags
// in the event's JSON), and event.ParseTags turns them back into the
// delivery's ledger key, so a report lands on exactly one delivery.
func Tags(m *provider.Message) ([]types.MessageTag, error) {
	tenant, delivery, err := key(m).Tags()
	if err != nil {
		return nil, err
	}
	return []types.MessageTag{
		{Name: aws.String(event.TagTenant), Value: aws.String(tenant)},
		{Name: aws.String(event.TagDelivery), Value: aws.String(delivery)},
	}, nil
}

// key is m's ledger key; SES carries email only.
func key(m *provider.Message) event.DeliveryKey {
	return event.DeliveryKey{Tenant: m.Tenant, Job: m.JobID, Channel: event.ChannelEmail, Customer: m.CustomerID}
}
