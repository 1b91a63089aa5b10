// Command dispatch sends the rendered messages on the dispatch topic
// through each channel's provider, exactly once per recipient, and records
// every outcome in the delivery ledger.
//
//	dispatch [flags]           serve
//	dispatch migrate [flags]   apply the database schema and exit
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"herald/dispatch/internal/adsout"
	"herald/dispatch/internal/deliver"
	"herald/dispatch/internal/dkimsign"
	"herald/dispatch/internal/espout"
	"herald/dispatch/internal/ledger"
	"herald/dispatch/internal/mailbox"
	"herald/dispatch/internal/onsite"
	"herald/dispatch/internal/provider"
	"herald/dispatch/internal/ratelimit"
	"herald/dispatch/internal/route"
	"herald/dispatch/internal/sendgridout"
	"herald/dispatch/internal/sesout"
	"herald/dispatch/internal/smtpout"
	"herald/shared/config"
	"herald/shared/event"
	"herald/shared/messaging"
	"herald/shared/service"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal ends the process at once
	}()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "dispatch:", err)
		os.Exit(1)
	}
}

type settings struct {
	service.Common
	Receive        messaging.ReceiveConfig
	SMTP           smtpout.Config
	SMTPSecurity   smtpSecurity
	LookupURL      string
	ESP            espout.Config
	SES            sesout.Config
	SESKeyIDFile   string
	SESSecretFile  string
	SendGrid       sendgridout.Config
	SendGridFile   string
	Ads            adsout.Config
	AdsTokenFile   string
	EmailProviders string
	DKIM           dkimsign.Config
	DKIMKeyFile    string
	Breaker        route.BreakerConfig
	Deliver        deliver.Config
	ProviderRate   float64
	MailboxRates   string
	MailboxDomains string
	RateCooldown   time.Duration
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "migrate" {
		return service.Migrate(ctx, "dispatch", args[1:], getenv, stdout)
	}
	var cfg settings
	var err error
	set := config.New("dispatch", getenv)
	cfg.Define(set, ":8083")
	set.Int(&cfg.Receive.Streams, "streams", "HERALD_STREAMS", 4, "Pub/Sub streaming pulls")
	set.Int(&cfg.Receive.MaxInFlight, "in-flight", "HERALD_IN_FLIGHT", 2, "batches handled at once per stream (each holds a database connection)")
	set.String(&cfg.EmailProviders, "email-providers", "HERALD_EMAIL_PROVIDERS", "smtp", "email providers in order of preference (smtp, ses, sendgrid, esp): the next takes over while the one before has its breaker open")
	set.String(&cfg.SMTP.Addr, "smtp-addr", "HERALD_SMTP_ADDR", "", "host:port of the SMTP server that relays the mail")
	set.String(&cfg.SMTP.HeloName, "smtp-helo", "HERALD_SMTP_HELO", "localhost", "name given in EHLO")
	set.Int(&cfg.SMTP.Conns, "smtp-conns", "HERALD_SMTP_CONNS", 16, "SMTP connections kept open at most")
	set.Int(&cfg.SMTP.MaxPerConn, "smtp-max-per-conn", "HERALD_SMTP_MAX_PER_CONN", 1000, "messages per SMTP connection before it is recycled")
	set.Bool(&cfg.SMTP.NoChunking, "smtp-no-chunking", "HERALD_SMTP_NO_CHUNKING", false, "send with DATA even where the relay offers BDAT (CHUNKING)")
	set.Duration(&cfg.SMTP.Timeout, "smtp-timeout", "HERALD_SMTP_TIMEOUT", 30*time.Second, "timeout of each SMTP command and of the final reply")
	sec := &cfg.SMTPSecurity
	set.String(&sec.TLS, "smtp-tls", "HERALD_SMTP_TLS", string(smtpout.StartTLS), "how the SMTP relay is reached: starttls (required, port 587), implicit (TLS from the first byte, port 465) or none (plain text, loopback only, with -smtp-insecure-loopback)")
	set.Bool(&sec.InsecureLoopback, "smtp-insecure-loopback", "HERALD_SMTP_INSECURE_LOOPBACK", false, "allow -smtp-tls=none, for a relay on a loopback address only (tests, a local catcher)")
	set.String(&sec.CAFile, "smtp-ca-file", "HERALD_SMTP_CA_FILE", "", "PEM file of the CA certificates that verify the SMTP relay; empty: the system's roots")
	set.String(&sec.Username, "smtp-username", "HERALD_SMTP_USERNAME", "", "user name for SMTP AUTH (PLAIN, else LOGIN), sent only over TLS; empty: no AUTH")
	set.Secret(&sec.Password, "smtp-password", "HERALD_SMTP_PASSWORD", "", "password for SMTP AUTH; prefer the environment variable or -smtp-password-file to the flag")
	set.String(&sec.PasswordFile, "smtp-password-file", "HERALD_SMTP_PASSWORD_FILE", "", "file holding the password for SMTP AUTH (a mounted Secret)")
	set.String(&sec.ReturnDomain, "smtp-return-domain", "HERALD_SMTP_RETURN_DOMAIN", "", "domain of the per-delivery VERP envelope sender bounce+<token>@domain, whose MX takes bounces; empty: the batch's sender")
	set.Secret(&sec.VERPSecret, "smtp-verp-secret", "HERALD_SMTP_VERP_SECRET", "", "secret (16 bytes or more) that signs VERP tokens, so forged bounce addresses are refused")
	set.String(&cfg.LookupURL, "smtp-lookup-url", "HERALD_SMTP_LOOKUP_URL", "", "the SMTP provider's message lookup endpoint, used to reconcile sends with unknown outcome; empty: such sends are recorded ambiguous")
	set.String(&cfg.ESP.BaseURL, "esp-url", "HERALD_ESP_URL", "", "base URL of the HTTP email API (provider \"esp\")")
	set.Secret(&cfg.ESP.APIKey, "esp-key", "HERALD_ESP_KEY", "", "API key of the HTTP email API")
	set.String(&cfg.SES.Region, "ses-region", "HERALD_SES_REGION", "", "AWS region of the Amazon SES account (provider \"ses\"), e.g. eu-west-1")
	set.String(&cfg.SES.Endpoint, "ses-endpoint", "HERALD_SES_ENDPOINT", "", "SES API endpoint in place of the region's, e.g. a local test server; empty: AWS's")
	set.String(&cfg.SES.ConfigurationSet, "ses-configuration-set", "HERALD_SES_CONFIGURATION_SET", "", "SES configuration set every message is sent with, whose event destination publishes its bounces, complaints and deliveries")
	set.Secret(&cfg.SES.AccessKeyID, "ses-access-key-id", "HERALD_SES_ACCESS_KEY_ID", "", "AWS access key id that signs SES requests; or -ses-access-key-id-file")
	set.String(&cfg.SESKeyIDFile, "ses-access-key-id-file", "HERALD_SES_ACCESS_KEY_ID_FILE", "", "file holding the AWS access key id (a mounted Secret)")
	set.Secret(&cfg.SES.SecretAccessKey, "ses-secret-access-key", "HERALD_SES_SECRET_ACCESS_KEY", "", "AWS secret access key; prefer -ses-secret-access-key-file or the environment to the flag")
	set.String(&cfg.SESSecretFile, "ses-secret-access-key-file", "HERALD_SES_SECRET_ACCESS_KEY_FILE", "", "file holding the AWS secret access key (a mounted Secret)")
	set.String(&cfg.SendGrid.BaseURL, "sendgrid-url", "HERALD_SENDGRID_URL", sendgridout.DefaultBaseURL, "base URL of SendGrid's v3 API (provider \"sendgrid\"); https://api.eu.sendgrid.com for the EU region")
	set.Secret(&cfg.SendGrid.APIKey, "sendgrid-key", "HERALD_SENDGRID_KEY", "", "SendGrid API key with the mail.send scope; prefer -sendgrid-key-file or the environment to the flag")
	set.String(&cfg.SendGridFile, "sendgrid-key-file", "HERALD_SENDGRID_KEY_FILE", "", "file holding the SendGrid API key (a mounted Secret)")
	set.String(&cfg.Ads.AdAccountID, "ads-account", "HERALD_ADS_ACCOUNT", "", "Meta ad account id, digits without act_, whose custom audiences the ad channel fills; empty: no ad channel")
	set.String(&cfg.Ads.GraphURL, "ads-url", "HERALD_ADS_URL", adsout.DefaultGraphURL, "root of Meta's Graph API (a local test server in tests)")
	set.String(&cfg.Ads.APIVersion, "ads-api-version", "HERALD_ADS_API_VERSION", adsout.DefaultAPIVersion, "Marketing API version")
	set.String(&cfg.Ads.CustomerFileSource, "ads-customer-file-source", "HERALD_ADS_CUSTOMER_FILE_SOURCE", "USER_PROVIDED_ONLY", "customer_file_source of the audiences Herald creates (USER_PROVIDED_ONLY, PARTNER_PROVIDED_ONLY, BOTH_USER_AND_PARTNER_PROVIDED)")
	set.Secret(&cfg.Ads.AccessToken, "ads-token", "HERALD_ADS_TOKEN", "", "Meta system user access token with ads_management on the ad account; prefer -ads-token-file or the environment to the flag")
	set.String(&cfg.AdsTokenFile, "ads-token-file", "HERALD_ADS_TOKEN_FILE", "", "file holding the Meta access token (a mounted Secret)")
	set.String(&cfg.DKIM.Domain, "dkim-domain", "HERALD_DKIM_DOMAIN", "", "DKIM signing domain (d=); empty: SMTP and SES mail is not signed here")
	set.String(&cfg.DKIM.Selector, "dkim-selector", "HERALD_DKIM_SELECTOR", "herald", "DKIM selector (s=)")
	set.String(&cfg.DKIMKeyFile, "dkim-key-file", "HERALD_DKIM_KEY_FILE", "", "PEM file of the DKIM private key (RSA or Ed25519)")
	set.Int(&cfg.Breaker.Failures, "breaker-failures", "HERALD_BREAKER_FAILURES", 5, "consecutive failed calls that open a provider's circuit breaker")
	set.Duration(&cfg.Breaker.Cooloff, "breaker-cooloff", "HERALD_BREAKER_COOLOFF", 30*time.Second, "how long an open breaker waits before probing its provider again")
	set.Int(&cfg.Deliver.Chunk, "claim-chunk", "HERALD_CLAIM_CHUNK", 100, "recipients claimed at a time; bounds the sends left in doubt if the process dies")
	set.Float(&cfg.ProviderRate, "provider-rate", "HERALD_PROVIDER_RATE", 0, "sends per second each email provider account allows across all replicas; 0: unlimited")
	set.String(&cfg.MailboxRates, "mailbox-rates", "HERALD_MAILBOX_RATES", "", "sends per second per receiving mailbox provider across all replicas, e.g. gmail=500,yahoo=300")
	set.String(&cfg.MailboxDomains, "mailbox-domains", "HERALD_MAILBOX_DOMAINS", "", "extra recipient domains per receiver, e.g. gmail=workspace.example;corp=.corp.example")
	set.Duration(&cfg.Deliver.MaxWait, "rate-wait", "HERALD_RATE_WAIT", 2*time.Second, "how long recipients wait for their receiver's rate before being deferred")
	set.Duration(&cfg.RateCooldown, "rate-cooldown", "HERALD_RATE_COOLDOWN", 30*time.Second, "how long after the last throttling a cut rate starts growing back")
	set.Duration(&cfg.Deliver.TenantTTL, "tenant-ttl", "HERALD_TENANT_TTL", 30*time.Second, "how long a tenant's dispatch settings (send rate, providers) are cached")
	if err := set.Parse(args); err != nil {
		return err
	}
	if err := validate(cfg); err != nil {
		return err
	}
	if usesSMTP(cfg.EmailProviders) {
		if cfg.SMTP, err = secureSMTP(cfg.SMTP, cfg.SMTPSecurity, os.ReadFile); err != nil {
			return err
		}
	}
	rules, err := mailbox.Parse(cfg.MailboxDomains)
	if err != nil {
		return err
	}
	receiverRates, err := mailbox.ParseRates(cfg.MailboxRates)
	if err != nil {
		return err
	}
	cfg.Receive.Grace = cfg.Grace
	cfg.Receive.LeaseStep = 15 * time.Second
	p, err := service.Start(ctx, "dispatch", cfg.Common, set, stdout, true)
	if err != nil {
		return err
	}
	defer p.Close()
	cfg.Receive.Registry = p.Registry
	if err := messaging.EnsureTopology(ctx, p.Pubsub, messaging.Dispatch); err != nil {
		return err
	}
	router := route.New(p.Registry)
	var emailNames []string
	for _, name := range strings.Split(cfg.EmailProviders, ",") {
		var sender provider.Sender
		var reconcile provider.Reconciler
		switch name = strings.TrimSpace(name); name {
		case "smtp":
			pool := smtpout.NewPool(cfg.SMTP)
			defer pool.Close()
			sender = pool
			if cfg.LookupURL != "" {
				reconcile = smtpout.NewLookup(cfg.LookupURL)
			}
			if cfg.DKIM.Domain != "" {
				if cfg.DKIM.KeyPEM, err = os.ReadFile(cfg.DKIMKeyFile); err != nil {
					return fmt.Errorf("read DKIM key: %w", err)
				}
				signer, err := dkimsign.New(cfg.DKIM)
				if err != nil {
					return err
				}
				sender = signer.Wrap(pool)
			}
		case "esp":
			esp, err := espout.New(cfg.ESP)
			if err != nil {
				return err
			}
			sender = esp
		case "ses":
			if sender, err = newSES(cfg, os.ReadFile); err != nil {
				return err
			}
		case "sendgrid":
			if sender, err = newSendGrid(cfg, os.ReadFile); err != nil {
				return err
			}
		}
		router.Add(event.ChannelEmail, name, sender, reconcile, cfg.Breaker, p.Registry)
		emailNames = append(emailNames, sender.Name())
	}
	router.Add(event.ChannelOnsite, event.ChannelOnsite.ProviderKind(), onsite.New(p.DB), nil, cfg.Breaker, p.Registry)
	if cfg.Ads.AdAccountID != "" {
		ads, err := newAds(cfg, os.ReadFile)
		if err != nil {
			return err
		}
		router.Add(event.ChannelAd, event.ChannelAd.ProviderKind(), ads, nil, cfg.Breaker, p.Registry)
	}
	limits := ratelimit.New(p.DB, cfg.RateCooldown, p.Registry)
	var buckets []ratelimit.Bucket
	for _, name := range emailNames {
		if cfg.ProviderRate > 0 {
			buckets = append(buckets, ratelimit.Bucket{Name: "account:" + name, Rate: cfg.ProviderRate})
		}
		for recv, rate := range receiverRates {
			buckets = append(buckets, ratelimit.Bucket{Name: "mailbox:" + name + ":" + recv, Rate: rate})
		}
	}
	if err := limits.Ensure(ctx, buckets...); err != nil {
		return err
	}
	d := deliver.New(ledger.New(p.DB), router, limits, mailbox.New(rules), p.Log, p.Registry, cfg.Deliver)
	return p.Run(ctx, nil, func(ctx, workCtx context.Context) error {
		return messaging.Receive(ctx, workCtx, p.Pubsub, messaging.Dispatch, cfg.Receive, p.Log, d.Handle)
	})
}

func validate(cfg settings) error {
	var errs []error
	if cfg.Receive.Streams < 1 || cfg.Receive.MaxInFlight < 1 {
		errs = append(errs, errors.New("-streams and -in-flight must be positive"))
	}
	if held := cfg.Receive.Streams * cfg.Receive.MaxInFlight; cfg.DBMaxConns < held+2 {
		errs = append(errs, fmt.Errorf("-db-max-conns must be at least streams×in-flight+2 = %d: every batch in flight holds a connection", held+2))
	}
	seen := map[string]bool{}
	for _, name := range strings.Split(cfg.EmailProviders, ",") {
		name = strings.TrimSpace(name)
		switch {
		case seen[name]:
			errs = append(errs, fmt.Errorf("-email-providers names %q twice", name))
		case name == "smtp" && cfg.SMTP.Addr == "":
			errs = append(errs, errors.New("-email-providers has smtp: -smtp-addr (HERALD_SMTP_ADDR) is required"))
		case name == "esp" && cfg.ESP.BaseURL == "":
			errs = append(errs, errors.New("-email-providers has esp: -esp-url (HERALD_ESP_URL) is required"))
		case name == "ses":
			if cfg.SES.Region == "" {
				errs = append(errs, errors.New("-email-providers has ses: -ses-region (HERALD_SES_REGION) is required"))
			}
			errs = append(errs, oneSecret("ses", "-ses-access-key-id", cfg.SES.AccessKeyID, cfg.SESKeyIDFile))
			errs = append(errs, oneSecret("ses", "-ses-secret-access-key", cfg.SES.SecretAccessKey, cfg.SESSecretFile))
		case name == "sendgrid":
			errs = append(errs, oneSecret("sendgrid", "-sendgrid-key", cfg.SendGrid.APIKey, cfg.SendGridFile))
		case name != "smtp" && name != "esp":
			errs = append(errs, fmt.Errorf("-email-providers: unknown provider %q (want smtp, ses, sendgrid or esp)", name))
		}
		seen[name] = true
	}
	if cfg.DKIM.Domain != "" && cfg.DKIMKeyFile == "" {
		errs = append(errs, errors.New("-dkim-domain needs -dkim-key-file"))
	}
	if cfg.SMTP.Conns < 1 {
		errs = append(errs, errors.New("-smtp-conns must be positive"))
	}
	if cfg.SMTP.Timeout <= 0 {
		errs = append(errs, errors.New("-smtp-timeout must be positive"))
	}
	if cfg.Breaker.Failures < 1 || cfg.Breaker.Cooloff <= 0 {
		errs = append(errs, errors.New("-breaker-failures and -breaker-cooloff must be positive"))
	}
	if cfg.ProviderRate < 0 {
		errs = append(errs, errors.New("-provider-rate must not be negative"))
	}
	if cfg.Deliver.MaxWait <= 0 || cfg.RateCooldown <= 0 || cfg.Deliver.TenantTTL <= 0 {
		errs = append(errs, errors.New("-rate-wait, -rate-cooldown and -tenant-ttl must be positive"))
	}
	if cfg.Deliver.Chunk < 1 || cfg.Deliver.Chunk > 5000 {
		errs = append(errs, errors.New("-claim-chunk must be between 1 and 5000"))
	}
	return errors.Join(errs...)
}

// oneSecret checks that a provider's secret comes from exactly one of its
// flag (or variable) and its file.
func oneSecret(provider, flag, value, file string) error {
	switch {
	case value == "" && file == "":
		return fmt.Errorf("-email-providers has %s: %s or %s-file is required", provider, flag, flag)
	case value != "" && file != "":
		return fmt.Errorf("-email-providers has %s: give %s or %s-file, not both", provider, flag, flag)
	}
	return nil
}

// newSES builds the "ses" provider: credentials from their flags or files,
// and, with -dkim-domain, Herald's DKIM signature on the raw message SES
// sends as it is.
func newSES(cfg settings, readFile func(string) ([]byte, error)) (provider.Sender, error) {
	var err error
	if cfg.SES.AccessKeyID, err = config.ValueOrFile("ses-access-key-id", cfg.SES.AccessKeyID, cfg.SESKeyIDFile, readFile); err != nil {
		return nil, fmt.Errorf("ses access key id: %w", err)
	}
	if cfg.SES.SecretAccessKey, err = config.ValueOrFile("ses-secret-access-key", cfg.SES.SecretAccessKey, cfg.SESSecretFile, readFile); err != nil {
		return nil, fmt.Errorf("ses secret access key: %w", err)
	}
	ses, err := sesout.New(cfg.SES)
	if err != nil {
		return nil, err
	}
	if cfg.DKIM.Domain == "" {
		return ses, nil
	}
	if cfg.DKIM.KeyPEM, err = readFile(cfg.DKIMKeyFile); err != nil {
		return nil, fmt.Errorf("read DKIM key: %w", err)
	}
	signer, err := dkimsign.New(cfg.DKIM)
	if err != nil {
		return nil, err
	}
	return signer.Wrap(ses), nil
}

// newSendGrid builds the "sendgrid" provider. SendGrid rebuilds every
// message, so Herald's DKIM signature would not survive: SendGrid signs
// for the domain authenticated in its account.
func newSendGrid(cfg settings, readFile func(string) ([]byte, error)) (provider.Sender, error) {
	var err error
	if cfg.SendGrid.APIKey, err = config.ValueOrFile("sendgrid-key", cfg.SendGrid.APIKey, cfg.SendGridFile, readFile); err != nil {
		return nil, fmt.Errorf("sendgrid key: %w", err)
	}
	return sendgridout.New(cfg.SendGrid)
}

// newAds builds the ad channel's Meta client, its access token from
// -ads-token (or the environment) or -ads-token-file.
func newAds(cfg settings, readFile func(string) ([]byte, error)) (*adsout.Client, error) {
	var err error
	if cfg.Ads.AccessToken, err = config.ValueOrFile("ads-token", cfg.Ads.AccessToken, cfg.AdsTokenFile, readFile); err != nil {
		return nil, fmt.Errorf("ads token: %w", err)
	}
	return adsout.New(cfg.Ads)
}

// smtpSecurity is how dispatch reaches its SMTP relay, as the flags give it;
// secureSMTP turns it into the pool's settings.
type smtpSecurity struct {
	TLS              string
	InsecureLoopback bool
	CAFile           string
	Username         string
	Password         string
	PasswordFile     string
	ReturnDomain     string
	VERPSecret       string
}

func usesSMTP(providers string) bool {
	for _, name := range strings.Split(providers, ",") {
		if strings.TrimSpace(name) == "smtp" {
			return true
		}
	}
	return false
}

// secureSMTP completes the pool's settings with TLS, AUTH and VERP, reading
// the CA and password files with readFile. Plain text needs both the
// explicit -smtp-insecure-loopback and a relay on a loopback address, so
// neither a typo nor a copied flag sends credentials or mail in the clear
// across a network. The password is never part of an error.
func secureSMTP(cfg smtpout.Config, sec smtpSecurity, readFile func(string) ([]byte, error)) (smtpout.Config, error) {
	var errs []error
	host, _, _ := net.SplitHostPort(cfg.Addr)
	cfg.TLSMode = smtpout.TLSMode(sec.TLS)
	switch cfg.TLSMode {
	case smtpout.StartTLS, smtpout.ImplicitTLS:
	case smtpout.NoTLS:
		if !sec.InsecureLoopback {
			errs = append(errs, errors.New("-smtp-tls=none needs -smtp-insecure-loopback"))
		}
	default:
		errs = append(errs, fmt.Errorf("-smtp-tls=%q: want starttls, implicit or none", sec.TLS))
	}
	if sec.InsecureLoopback && !smtpout.IsLoopback(host) {
		errs = append(errs, fmt.Errorf("-smtp-insecure-loopback is for a relay on a loopback address, not %q", host))
	}
	if sec.CAFile != "" {
		pem, err := readFile(sec.CAFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("read -smtp-ca-file: %w", err))
		} else {
			roots := x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				errs = append(errs, fmt.Errorf("-smtp-ca-file %s holds no PEM certificate", sec.CAFile))
			}
			cfg.TLS = &tls.Config{RootCAs: roots}
		}
	}
	password := sec.Password
	switch {
	case sec.Password != "" && sec.PasswordFile != "":
		errs = append(errs, errors.New("give the SMTP password once: HERALD_SMTP_PASSWORD or -smtp-password-file"))
	case sec.PasswordFile != "":
		b, err := readFile(sec.PasswordFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("read -smtp-password-file: %w", err))
		}
		// A file written with echo or an editor ends in a newline that is
		// no part of the password.
		password = strings.TrimRight(string(b), "\r\n")
	}
	switch {
	case sec.Username != "" && password == "" && sec.PasswordFile == "":
		errs = append(errs, errors.New("-smtp-username needs a password: HERALD_SMTP_PASSWORD or -smtp-password-file"))
	case sec.Username == "" && (password != "" || sec.PasswordFile != ""):
		errs = append(errs, errors.New("an SMTP password needs -smtp-username"))
	case sec.Username != "":
		cfg.Auth = &smtpout.Auth{Username: sec.Username, Password: password}
	}
	switch {
	case sec.ReturnDomain != "":
		cfg.ReturnPath = &event.ReturnPath{Domain: sec.ReturnDomain, Secret: []byte(sec.VERPSecret)}
	case sec.VERPSecret != "":
		errs = append(errs, errors.New("-smtp-verp-secret needs -smtp-return-domain"))
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("smtp relay: %w", err)
	}
	return cfg, nil
}
