// Command dpop-e2e uses the Go client module the way an application does, driven by
// tests/clients/test_go_client.py, which starts the verifiers and mints the access token.
//
// Protocol: prints {"jkt", "jwk"} (the signer's public key) as one JSON line, reads one JSON line
// {plain, tls, mtls, dead, ca, clientCert, clientKey, token}, runs the scenarios and prints one
// JSON line of outcomes keyed by scenario.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/dpop-verifier/dpop-verifier/clients/go/dpopverifier"
	v1 "github.com/dpop-verifier/dpop-verifier/clients/go/dpopverifierv1"
)

type given struct {
	Plain, TLS, MTLS, Dead    string
	CA, ClientCert, ClientKey string
	Token                     string
}

type outcome map[string]interface{}

const targetURI = "https://api.test/orders"

func main() {
	signer, err := dpopverifier.GenerateProofSigner()
	check(err)
	check(json.NewEncoder(os.Stdout).Encode(map[string]interface{}{"jkt": signer.JKT(), "jwk": signer.PublicJWK()}))
	line, err := bufio.NewReader(os.Stdin).ReadBytes('\n')
	check(err)
	var in given
	check(json.Unmarshal(line, &in))
	results := map[string]interface{}{}

	request := func(s *dpopverifier.ProofSigner, proofURL string) *v1.VerifyRequest {
		proof, err := s.Proof("GET", proofURL, dpopverifier.ProofOptions{AccessToken: in.Token})
		check(err)
		return &v1.VerifyRequest{
			Method: "GET", TargetUri: targetURI,
			Authorization: []string{"DPoP " + in.Token}, Dpop: []string{proof},
		}
	}
	ask := func(client *dpopverifier.Client, ctx context.Context, r *v1.VerifyRequest) outcome {
		answer, err := client.Verify(ctx, r)
		var failure *dpopverifier.VerifierError
		if errors.As(err, &failure) {
			return outcome{"error": "VerifierError", "code": failure.Code.String(), "attempts": failure.Attempts}
		}
		check(err)
		return outcome{
			"allowed": dpopverifier.IsAllowed(answer), "reason": answer.GetReasonCode(),
			"status": answer.GetHttpStatus(), "jkt": answer.GetJkt(), "sub": answer.GetClaims().GetSub(),
		}
	}
	connect := func(address string, options dpopverifier.Options) *dpopverifier.Client {
		client, err := dpopverifier.New(address, options)
		check(err)
		return client
	}
	background := context.Background()
	fast := &dpopverifier.RetryPolicy{MaxAttempts: 2, InitialBackoff: 10 * time.Millisecond,
		MaxBackoff: 10 * time.Millisecond, Multiplier: 1, Codes: dpopverifier.DefaultRetry.Codes}

	// 1. The client, straight to the verifier: plaintext, TLS, mTLS, no verifier at all.
	plain := connect(in.Plain, dpopverifier.Options{Insecure: true})
	first := request(signer, targetURI)
	results["valid"] = ask(plain, background, first)
	results["replay"] = ask(plain, background, first)
	results["wrongHtu"] = ask(plain, background, request(signer, "https://api.test/admin"))
	restored, err := dpopverifier.ProofSignerFromJWK(signer.PrivateJWK())
	check(err)
	results["restoredSigner"] = ask(plain, background, request(restored, targetURI))

	certificate := dpopverifier.TLS{CAFile: in.CA, CertFile: in.ClientCert, KeyFile: in.ClientKey}
	transports := map[string]struct {
		address string
		options dpopverifier.Options
	}{
		"tls":                    {in.TLS, dpopverifier.Options{TLS: &dpopverifier.TLS{CAFile: in.CA, ServerName: "localhost"}}},
		"tlsWrongServerName":     {in.TLS, dpopverifier.Options{TLS: &dpopverifier.TLS{CAFile: in.CA, ServerName: "wrong.test"}, Retry: fast}},
		"tlsUntrusted":           {in.TLS, dpopverifier.Options{TLS: &dpopverifier.TLS{}, Retry: fast}},
		"plaintextToTls":         {in.TLS, dpopverifier.Options{Insecure: true, Retry: fast}},
		"mtls":                   {in.MTLS, dpopverifier.Options{TLS: &certificate}},
		"mtlsWithoutCertificate": {in.MTLS, dpopverifier.Options{TLS: &dpopverifier.TLS{CAFile: in.CA}, Retry: fast}},
		"unreachable":            {in.Dead, dpopverifier.Options{Insecure: true, Retry: fast}},
	}
	for name, transport := range transports {
		client := connect(transport.address, transport.options)
		results[name] = ask(client, background, request(signer, targetURI))
		client.Close()
	}
	endless := &dpopverifier.RetryPolicy{MaxAttempts: 10000, InitialBackoff: 20 * time.Millisecond,
		MaxBackoff: 20 * time.Millisecond, Multiplier: 1, Codes: dpopverifier.DefaultRetry.Codes}
	patient := connect(in.Dead, dpopverifier.Options{Insecure: true, Timeout: 500 * time.Millisecond, Retry: endless})
	started := time.Now()
	results["deadline"] = ask(patient, background, request(signer, targetURI))
	results["deadline"].(outcome)["elapsedMs"] = time.Since(started).Milliseconds()
	// The caller's context deadline wins when it is the earlier one.
	ctx, cancel := context.WithTimeout(background, 200*time.Millisecond)
	started = time.Now()
	results["callerDeadline"] = ask(patient, ctx, request(signer, targetURI))
	results["callerDeadline"].(outcome)["elapsedMs"] = time.Since(started).Milliseconds()
	cancel()
	patient.Close()
	_, err = dpopverifier.New(in.Plain, dpopverifier.Options{})
	results["noTransportChosen"] = err != nil

	// 2. The middleware over real HTTP: under http.StripPrefix, at the root, behind a proxy that
	// strips /api, and with no verifier.
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answer, ok := dpopverifier.AnswerFrom(r.Context())
		if !ok {
			http.Error(w, "no answer in the context", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		check(json.NewEncoder(w).Encode(map[string]string{"sub": answer.GetClaims().GetSub(), "path": r.URL.Path}))
	})
	middleware := func(client *dpopverifier.Client, options dpopverifier.RequestOptions) func(http.Handler) http.Handler {
		protect, err := client.Middleware(options)
		check(err)
		return protect
	}
	call := func(base, path, proofURL string) outcome {
		headers, err := signer.Headers("POST", proofURL, in.Token, "")
		check(err)
		httpRequest, err := http.NewRequest("POST", base+path, strings.NewReader("{}"))
		check(err)
		httpRequest.Header = headers
		response, err := http.DefaultClient.Do(httpRequest)
		check(err)
		defer response.Body.Close()
		var body map[string]string
		check(json.NewDecoder(response.Body).Decode(&body))
		return outcome{"status": response.StatusCode, "wwwAuthenticate": response.Header.Get("WWW-Authenticate"), "body": body}
	}

	mux := http.NewServeMux()
	mux.Handle("/api/", http.StripPrefix("/api", middleware(plain, dpopverifier.RequestOptions{})(hello)))
	mounted := httptest.NewServer(mux)
	results["stripPrefix"] = call(mounted.URL, "/api/orders?page=2", mounted.URL+"/api/orders")
	results["stripPrefixProofForStrippedPath"] = call(mounted.URL, "/api/orders", mounted.URL+"/orders")
	root := httptest.NewServer(middleware(plain, dpopverifier.RequestOptions{})(hello))
	results["root"] = call(root.URL, "/orders", root.URL+"/orders")
	publicOrigin := "https://api.example.com/api"
	proxied := httptest.NewServer(middleware(plain, dpopverifier.RequestOptions{PublicOrigin: publicOrigin})(hello))
	results["behindProxy"] = call(proxied.URL, "/orders", publicOrigin+"/orders")
	results["behindProxyInternalUrl"] = call(proxied.URL, "/orders", proxied.URL+"/orders")
	_, err = plain.Middleware(dpopverifier.RequestOptions{PublicOrigin: "https://api.example.com/?x=1"})
	results["badPublicOrigin"] = err != nil
	dead := connect(in.Dead, dpopverifier.Options{Insecure: true, Retry: fast})
	down := httptest.NewServer(middleware(dead, dpopverifier.RequestOptions{})(hello))
	results["verifierDown"] = call(down.URL, "/orders", down.URL+"/orders")
	for _, server := range []*httptest.Server{mounted, root, proxied, down} {
		server.Close()
	}
	dead.Close()
	plain.Close()
	check(json.NewEncoder(os.Stdout).Encode(results))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "dpop-e2e:", err)
		os.Exit(3)
	}
}
