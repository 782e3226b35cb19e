// Package dpopverifier calls the dpop-verifier service (dpop.verifier.v1.VerifierService) from
// Go: a Client with a default deadline and retries on UNAVAILABLE only, TLS and mTLS options, a
// request builder and a middleware for net/http, and an ES256 ProofSigner for services that call
// DPoP-protected APIs themselves.
//
//	verifier, err := dpopverifier.New("verifier.internal:50051", dpopverifier.Options{
//		TLS: &dpopverifier.TLS{CAFile: "ca.pem"},
//	})
//	protect, err := verifier.Middleware(dpopverifier.RequestOptions{PublicOrigin: "https://api.example.com"})
//	http.ListenAndServe(":8080", protect(handler))
//
// A deny is an answer (IsAllowed is false); a *VerifierError means there was no answer at all,
// which the caller must treat as a deny too.
package dpopverifier

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	v1 "github.com/dpop-verifier/dpop-verifier/clients/go/dpopverifierv1"
)

// DefaultTimeout is the deadline of one Verify call, retries included.
const DefaultTimeout = 2 * time.Second

// RetryPolicy says which failed calls are tried again. Only failures whose status is in Codes are
// retried (by default only UNAVAILABLE: the verifier could not be reached or was restarting). A
// deny is an answer, never a failure, so it is never retried. Waits grow from InitialBackoff by
// Multiplier up to MaxBackoff, with +/-20% jitter, and never run past the call's deadline.
// MaxAttempts counts the first try.
//
// A retry can repeat a request the verifier already accepted when only the answer was lost; the
// repeated proof is then denied as "replayed", which fails closed.
type RetryPolicy struct {
	MaxAttempts    int
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	Multiplier     float64
	Codes          []codes.Code
}

// DefaultRetry: 3 attempts, 50 ms doubling to 500 ms, UNAVAILABLE only.
var DefaultRetry = RetryPolicy{
	MaxAttempts:    3,
	InitialBackoff: 50 * time.Millisecond,
	MaxBackoff:     500 * time.Millisecond,
	Multiplier:     2,
	Codes:          []codes.Code{codes.Unavailable},
}

// NoRetry never retries.
var NoRetry = RetryPolicy{MaxAttempts: 1}

func (p RetryPolicy) retries(code codes.Code) bool {
	for _, c := range p.Codes {
		if c == code {
			return true
		}
	}
	return false
}

func (p RetryPolicy) delay(attempt int) time.Duration {
	base := float64(p.InitialBackoff)
	for i := 1; i < attempt; i++ {
		base *= p.Multiplier
	}
	if limit := float64(p.MaxBackoff); base > limit {
		base = limit
	}
	return time.Duration(base * (0.8 + 0.4*rand.Float64())) // jitter, not a secret
}

// TLS says how to reach a verifier that serves TLS (DPOP_TLS_CERT_FILE).
type TLS struct {
	// CAFile is the PEM bundle of the CA that signed the server certificate; empty: the
	// system roots.
	CAFile string
	// CertFile and KeyFile are this client's PEM certificate and key, when the server requires
	// mTLS (DPOP_TLS_CLIENT_CA_FILE).
	CertFile string
	KeyFile  string
	// ServerName is checked against the server certificate instead of the target's host.
	ServerName string
}

func (t *TLS) config() (*tls.Config, error) {
	config := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("dpopverifier: CA file: %w", err)
		}
		config.RootCAs = x509.NewCertPool()
		if !config.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("dpopverifier: no PEM certificate in %s", t.CAFile)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("dpopverifier: CertFile and KeyFile go together")
	}
	if t.CertFile != "" {
		certificate, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("dpopverifier: client certificate: %w", err)
		}
		config.Certificates = []tls.Certificate{certificate}
	}
	return config, nil
}

// Options configure a Client. Choose the transport explicitly: TLS (&TLS{} trusts the system
// roots) or Insecure for plaintext on loopback or inside an mTLS mesh.
type Options struct {
	TLS      *TLS
	Insecure bool
	// Timeout is the default deadline of one Verify call, retries included (0: DefaultTimeout).
	Timeout time.Duration
	// Retry is the retry policy (nil: DefaultRetry).
	Retry *RetryPolicy
	// DialOptions are added after the client's own.
	DialOptions []grpc.DialOption
}

// Client calls Verify on one verifier address. It is safe for concurrent use; make one for the
// life of the process and Close it at the end.
type Client struct {
	conn    *grpc.ClientConn
	stub    v1.VerifierServiceClient
	timeout time.Duration
	retry   RetryPolicy
}

// New makes a Client for target (host:port, dns:///name:port, unix:path). It does not wait for
// a connection: an unreachable verifier shows as a *VerifierError from Verify.
func New(target string, options Options) (*Client, error) {
	if (options.TLS == nil) == !options.Insecure {
		return nil, errors.New("dpopverifier: choose exactly one of Options.TLS or Options.Insecure")
	}
	transport := grpc.WithInsecure() // plaintext, asked for explicitly
	if options.TLS != nil {
		config, err := options.TLS.config()
		if err != nil {
			return nil, err
		}
		transport = grpc.WithTransportCredentials(credentials.NewTLS(config))
	}
	// gRPC's default reconnect backoff (1 s growing to 120 s) would keep a channel failing fast
	// for longer than a whole call may take; this lets a retry reach a restarted verifier.
	reconnect := grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
		BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second,
	}})
	dialOptions := append([]grpc.DialOption{transport, reconnect}, options.DialOptions...)
	conn, err := grpc.Dial(target, dialOptions...)
	if err != nil {
		return nil, fmt.Errorf("dpopverifier: %w", err)
	}
	client := &Client{conn: conn, stub: v1.NewVerifierServiceClient(conn), timeout: options.Timeout, retry: DefaultRetry}
	if client.timeout <= 0 {
		client.timeout = DefaultTimeout
	}
	if options.Retry != nil {
		client.retry = *options.Retry
	}
	if client.retry.MaxAttempts < 1 {
		return nil, errors.New("dpopverifier: RetryPolicy.MaxAttempts must be at least 1")
	}
	return client, nil
}

// Close closes the connection; calls in flight fail.
func (c *Client) Close() error { return c.conn.Close() }

// VerifierError is returned when the verifier gave no answer (after any retries). Treat it as a
// deny. Code is the gRPC status of the last attempt, Attempts how many were made.
type VerifierError struct {
	Code     codes.Code
	Message  string
	Attempts int
	err      error
}

func (e *VerifierError) Error() string {
	return fmt.Sprintf("verifier call failed: %s: %s (attempts: %d)", e.Code, e.Message, e.Attempts)
}

// Unwrap gives the gRPC status error of the last attempt.
func (e *VerifierError) Unwrap() error { return e.err }

// Verify returns the verifier's answer for request: allow, or deny with a reason. It returns a
// *VerifierError when no answer came within the client's timeout (or ctx's earlier deadline),
// retries included; the caller must then deny the request.
func (c *Client) Verify(ctx context.Context, request *v1.VerifyRequest) (*v1.VerifyResponse, error) {
	deadline := time.Now().Add(c.timeout)
	if own, ok := ctx.Deadline(); ok && own.Before(deadline) {
		deadline = own
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	for attempt := 1; ; attempt++ {
		response, err := c.stub.Verify(ctx, request)
		if err == nil {
			return response, nil
		}
		failure := status.Convert(err)
		delay := c.retry.delay(attempt)
		if !c.retry.retries(failure.Code()) || attempt >= c.retry.MaxAttempts || !time.Now().Add(delay).Before(deadline) {
			return nil, &VerifierError{Code: failure.Code(), Message: failure.Message(), Attempts: attempt, err: err}
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			failure = status.FromContextError(ctx.Err())
			return nil, &VerifierError{Code: failure.Code(), Message: failure.Message(), Attempts: attempt, err: ctx.Err()}
		case <-timer.C:
		}
	}
}
