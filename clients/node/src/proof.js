// Client-side DPoP (RFC 9449 §4): a P-256 key and the ES256 proofs it signs, for services that
// call DPoP-protected APIs themselves. WebCrypto only; no dependency.
import { createHash, randomBytes, webcrypto } from "node:crypto";

const { subtle } = webcrypto;
const EC_P256 = { name: "ECDSA", namedCurve: "P-256" };

const b64url = (bytes) => Buffer.from(bytes).toString("base64url");
const json = (value) => b64url(JSON.stringify(value));

/** The htu claim for a request URL: the URL without query and fragment (RFC 9449 §4.2). */
export function htuFor(url) {
  const parsed = new URL(url);
  if (!["http:", "https:"].includes(parsed.protocol)) {
    throw new TypeError(`not an absolute http(s) URL: ${url}`);
  }
  return `${parsed.origin}${parsed.pathname}`;
}

/**
 * A client's DPoP key (EC P-256), signing one fresh ES256 proof per request:
 *
 *   const signer = await ProofSigner.generate();
 *   fetch(url, { headers: await signer.headers("GET", url, accessToken) });
 *
 * `jkt` is the key's RFC 7638 thumbprint (what the authorization server binds tokens to);
 * `privateJwk()` and `ProofSigner.fromJwk()` store and restore the key.
 */
export class ProofSigner {
  #privateKey;

  constructor(privateKey, publicJwk) {
    this.#privateKey = privateKey;
    const { crv, kty, x, y } = publicJwk;
    this.publicJwk = Object.freeze({ kty, crv, x, y });
    // RFC 7638: the required members in lexicographic order, no whitespace.
    const canonical = JSON.stringify({ crv, kty, x, y });
    this.jkt = createHash("sha256").update(canonical).digest("base64url");
  }

  static alg = "ES256";

  /** A signer with a new random P-256 key. */
  static async generate() {
    const pair = await subtle.generateKey(EC_P256, true, ["sign", "verify"]);
    return new ProofSigner(pair.privateKey, await subtle.exportKey("jwk", pair.publicKey));
  }

  /** A signer for a private EC P-256 JWK (as returned by `privateJwk()`). */
  static async fromJwk(privateJwk) {
    const { kty, crv, x, y, d } = privateJwk;
    if (kty !== "EC" || crv !== "P-256" || !d) {
      throw new TypeError("expected an EC P-256 private JWK");
    }
    const key = await subtle.importKey("jwk", { kty, crv, x, y, d }, EC_P256, true, ["sign"]);
    return new ProofSigner(key, { kty, crv, x, y });
  }

  /** The private key as a JWK, for a secret store. Never log it. */
  async privateJwk() {
    const { kty, crv, x, y, d } = await subtle.exportKey("jwk", this.#privateKey);
    return { kty, crv, x, y, d };
  }

  /**
   * The DPoP header value for one request: htm = method, htu = url without query and fragment,
   * a fresh random jti, iat = now, ath when an access token is presented, and the server's nonce
   * if it sent one (a use_dpop_nonce answer carries it in DPoP-Nonce).
   */
  async proof(method, url, { accessToken, nonce, now } = {}) {
    const payload = {
      jti: b64url(randomBytes(16)),
      htm: method,
      htu: htuFor(url),
      iat: Math.floor((now ?? Date.now()) / 1000),
    };
    if (accessToken !== undefined) {
      payload.ath = createHash("sha256").update(accessToken, "ascii").digest("base64url");
    }
    if (nonce !== undefined) payload.nonce = nonce;
    const header = { typ: "dpop+jwt", alg: ProofSigner.alg, jwk: this.publicJwk };
    const signingInput = `${json(header)}.${json(payload)}`;
    // WebCrypto's ECDSA signature is already R || S (IEEE P1363), the JWS form (RFC 7518 §3.4).
    const signature = await subtle.sign(
      { name: "ECDSA", hash: "SHA-256" },
      this.#privateKey,
      Buffer.from(signingInput, "ascii"),
    );
    return `${signingInput}.${b64url(signature)}`;
  }

  /** The `authorization: DPoP <token>` and `dpop` headers of a resource request. */
  async headers(method, url, accessToken, { nonce } = {}) {
    return {
      authorization: `DPoP ${accessToken}`,
      dpop: await this.proof(method, url, { accessToken, nonce }),
    };
  }
}
