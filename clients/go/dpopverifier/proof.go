package dpopverifier

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"time"
)

const coordinateBytes = 32 // P-256

var b64url = base64.RawURLEncoding

// ProofSigner is a client's DPoP key (EC P-256), signing one fresh ES256 proof per request (RFC
// 9449 §4), for services that call DPoP-protected APIs themselves. Keep the key for as long as
// the access tokens bound to it live: PrivateJWK and ProofSignerFromJWK store and restore it.
type ProofSigner struct {
	key       *ecdsa.PrivateKey
	publicJWK map[string]string
	jkt       string
}

// GenerateProofSigner makes a signer with a new random P-256 key.
func GenerateProofSigner() (*ProofSigner, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return newProofSigner(key), nil
}

// ProofSignerFromJWK makes a signer from a private EC P-256 JWK (as PrivateJWK writes it).
func ProofSignerFromJWK(jwk map[string]string) (*ProofSigner, error) {
	if jwk["kty"] != "EC" || jwk["crv"] != "P-256" {
		return nil, errors.New("dpopverifier: expected an EC P-256 private JWK")
	}
	numbers := make([]*big.Int, 3)
	for i, name := range []string{"x", "y", "d"} {
		raw, err := b64url.DecodeString(jwk[name])
		if err != nil || len(raw) != coordinateBytes {
			return nil, fmt.Errorf("dpopverifier: JWK member %s is not a P-256 value", name)
		}
		numbers[i] = new(big.Int).SetBytes(raw)
	}
	curve := elliptic.P256()
	if numbers[2].Sign() == 0 || numbers[2].Cmp(curve.Params().N) >= 0 {
		return nil, errors.New("dpopverifier: the JWK's d is out of range")
	}
	x, y := curve.ScalarBaseMult(numbers[2].Bytes())
	if x.Cmp(numbers[0]) != 0 || y.Cmp(numbers[1]) != 0 {
		return nil, errors.New("dpopverifier: the JWK's d does not match its x and y")
	}
	key := &ecdsa.PrivateKey{PublicKey: ecdsa.PublicKey{Curve: curve, X: x, Y: y}, D: numbers[2]}
	return newProofSigner(key), nil
}

func newProofSigner(key *ecdsa.PrivateKey) *ProofSigner {
	public := map[string]string{
		"kty": "EC",
		"crv": "P-256",
		"x":   b64url.EncodeToString(key.X.FillBytes(make([]byte, coordinateBytes))),
		"y":   b64url.EncodeToString(key.Y.FillBytes(make([]byte, coordinateBytes))),
	}
	// RFC 7638: the required members in lexicographic order (encoding/json sorts map keys).
	canonical, _ := json.Marshal(public)
	digest := sha256.Sum256(canonical)
	return &ProofSigner{key: key, publicJWK: public, jkt: b64url.EncodeToString(digest[:])}
}

// JKT is the key's RFC 7638 thumbprint: what an access token is bound to (cnf.jkt).
func (s *ProofSigner) JKT() string { return s.jkt }

// PublicJWK is the public key sent in every proof.
func (s *ProofSigner) PublicJWK() map[string]string {
	copied := make(map[string]string, len(s.publicJWK))
	for name, value := range s.publicJWK {
		copied[name] = value
	}
	return copied
}

// PrivateJWK is the private key as a JWK, for a secret store. Never log it.
func (s *ProofSigner) PrivateJWK() map[string]string {
	jwk := s.PublicJWK()
	jwk["d"] = b64url.EncodeToString(s.key.D.FillBytes(make([]byte, coordinateBytes)))
	return jwk
}

// ProofOptions are the optional parts of a proof.
type ProofOptions struct {
	// AccessToken adds ath, the hash of the token the request presents.
	AccessToken string
	// Nonce is the server's DPoP-Nonce (a use_dpop_nonce answer carries it).
	Nonce string
	// Now is the proof's iat (zero: the current time).
	Now time.Time
}

// HTUFor is the htu claim for a request URL: the URL without query and fragment (RFC 9449 §4.2).
func HTUFor(target string) (string, error) {
	parsed, err := url.Parse(target)
	if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
		return "", fmt.Errorf("dpopverifier: not an absolute http(s) URL: %q", target)
	}
	path := parsed.EscapedPath()
	if path == "" {
		path = "/"
	}
	return parsed.Scheme + "://" + parsed.Host + path, nil
}

// Proof is the DPoP header value for one request: htm = method, htu = target without query and
// fragment, a fresh random jti, iat = now, and ath and nonce when given.
func (s *ProofSigner) Proof(method, target string, options ProofOptions) (string, error) {
	htu, err := HTUFor(target)
	if err != nil {
		return "", err
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	now := options.Now
	if now.IsZero() {
		now = time.Now()
	}
	payload := map[string]interface{}{
		"jti": b64url.EncodeToString(jti), "htm": method, "htu": htu, "iat": now.Unix(),
	}
	if options.AccessToken != "" {
		digest := sha256.Sum256([]byte(options.AccessToken))
		payload["ath"] = b64url.EncodeToString(digest[:])
	}
	if options.Nonce != "" {
		payload["nonce"] = options.Nonce
	}
	header := map[string]interface{}{"typ": "dpop+jwt", "alg": "ES256", "jwk": s.publicJWK}
	headerJSON, _ := json.Marshal(header)
	payloadJSON, _ := json.Marshal(payload)
	signingInput := b64url.EncodeToString(headerJSON) + "." + b64url.EncodeToString(payloadJSON)
	digest := sha256.Sum256([]byte(signingInput))
	r, sig, err := ecdsa.Sign(rand.Reader, s.key, digest[:])
	if err != nil {
		return "", err
	}
	// RFC 7518 §3.4: the JWS signature is R || S, each 32 bytes, not DER.
	signature := append(r.FillBytes(make([]byte, coordinateBytes)), sig.FillBytes(make([]byte, coordinateBytes))...)
	return signingInput + "." + b64url.EncodeToString(signature), nil
}

// Headers are the Authorization: DPoP <token> and DPoP headers of a resource request.
func (s *ProofSigner) Headers(method, target, accessToken, nonce string) (http.Header, error) {
	proof, err := s.Proof(method, target, ProofOptions{AccessToken: accessToken, Nonce: nonce})
	if err != nil {
		return nil, err
	}
	headers := http.Header{}
	headers.Set("Authorization", "DPoP "+accessToken)
	headers.Set("DPoP", proof)
	return headers, nil
}
