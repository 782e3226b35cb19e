package io.dpopverifier.client;

import java.math.BigInteger;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.security.AlgorithmParameters;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.security.Signature;
import java.security.interfaces.ECPrivateKey;
import java.security.interfaces.ECPublicKey;
import java.security.spec.ECGenParameterSpec;
import java.security.spec.ECParameterSpec;
import java.security.spec.ECPoint;
import java.security.spec.ECPrivateKeySpec;
import java.security.spec.ECPublicKeySpec;
import java.time.Instant;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;

/**
 * A client's DPoP key (EC P-256), signing one fresh ES256 proof per request (RFC 9449 §4), for
 * services that call DPoP-protected APIs themselves. JDK only.
 *
 * <pre>
 * ProofSigner signer = ProofSigner.generate();
 * Map&lt;String, String&gt; headers = signer.headers("GET", "https://api.example.com/orders", token);
 * </pre>
 *
 * <p>{@link #jkt()} is the key's RFC 7638 thumbprint, which the authorization server binds tokens
 * to; {@link #privateJwk()} and {@link #fromJwk} store and restore the key.
 */
public final class ProofSigner {
  private static final int COORDINATE_BYTES = 32; // P-256
  private static final Base64.Encoder B64URL = Base64.getUrlEncoder().withoutPadding();
  private static final Base64.Decoder B64URL_DECODER = Base64.getUrlDecoder();
  private static final SecureRandom RANDOM = new SecureRandom();

  private final ECPrivateKey privateKey;
  private final Map<String, String> publicJwk;
  private final String jkt;

  private ProofSigner(ECPrivateKey privateKey, ECPublicKey publicKey) {
    this.privateKey = privateKey;
    ECPoint point = publicKey.getW();
    Map<String, String> jwk = new TreeMap<>(); // RFC 7638: members in lexicographic order
    jwk.put("crv", "P-256");
    jwk.put("kty", "EC");
    jwk.put("x", B64URL.encodeToString(unsigned(point.getAffineX())));
    jwk.put("y", B64URL.encodeToString(unsigned(point.getAffineY())));
    this.publicJwk = Map.copyOf(jwk);
    this.jkt = B64URL.encodeToString(sha256(Json.object(jwk)));
  }

  /** A signer with a new random P-256 key. */
  public static ProofSigner generate() throws GeneralSecurityException {
    KeyPairGenerator generator = KeyPairGenerator.getInstance("EC");
    generator.initialize(new ECGenParameterSpec("secp256r1"), RANDOM);
    KeyPair pair = generator.generateKeyPair();
    return new ProofSigner((ECPrivateKey) pair.getPrivate(), (ECPublicKey) pair.getPublic());
  }

  /** A signer for a private EC P-256 JWK (as {@link #privateJwk()} writes it). */
  public static ProofSigner fromJwk(Map<String, String> jwk) throws GeneralSecurityException {
    if (!"EC".equals(jwk.get("kty")) || !"P-256".equals(jwk.get("crv"))) {
      throw new IllegalArgumentException("expected an EC P-256 private JWK");
    }
    AlgorithmParameters parameters = AlgorithmParameters.getInstance("EC");
    parameters.init(new ECGenParameterSpec("secp256r1"));
    ECParameterSpec curve = parameters.getParameterSpec(ECParameterSpec.class);
    KeyFactory factory = KeyFactory.getInstance("EC");
    ECPoint point = new ECPoint(number(jwk, "x"), number(jwk, "y"));
    ECPublicKey publicKey =
        (ECPublicKey) factory.generatePublic(new ECPublicKeySpec(point, curve));
    ECPrivateKey privateKey =
        (ECPrivateKey) factory.generatePrivate(new ECPrivateKeySpec(number(jwk, "d"), curve));
    ProofSigner signer = new ProofSigner(privateKey, publicKey);
    byte[] probe = "dpop key check".getBytes(StandardCharsets.US_ASCII);
    Signature verify = Signature.getInstance("SHA256withECDSAinP1363Format");
    verify.initVerify(publicKey);
    verify.update(probe);
    if (!verify.verify(signer.sign(probe))) {
      throw new IllegalArgumentException("the JWK's d does not match its x and y");
    }
    return signer;
  }

  /** The key's RFC 7638 thumbprint: what an access token is bound to ({@code cnf.jkt}). */
  public String jkt() {
    return jkt;
  }

  /** The public key sent in every proof. */
  public Map<String, String> publicJwk() {
    return publicJwk;
  }

  /** The private key as a JWK, for a secret store. Never log it. */
  public Map<String, String> privateJwk() {
    Map<String, String> jwk = new TreeMap<>(publicJwk);
    jwk.put("d", B64URL.encodeToString(unsigned(privateKey.getS())));
    return jwk;
  }

  /** The htu claim for a request URL: the URL without query and fragment (RFC 9449 §4.2). */
  public static String htuFor(String url) {
    URI uri = URI.create(url);
    if (!("http".equals(uri.getScheme()) || "https".equals(uri.getScheme()))
        || uri.getRawAuthority() == null) {
      throw new IllegalArgumentException("not an absolute http(s) URL: " + url);
    }
    String path = uri.getRawPath() == null || uri.getRawPath().isEmpty() ? "/" : uri.getRawPath();
    return uri.getScheme() + "://" + uri.getRawAuthority() + path;
  }

  /**
   * The {@code DPoP} header value for one request: htm = method, htu = url without query and
   * fragment, a fresh random jti, iat = now, ath when {@code accessToken} is not null, and the
   * server's {@code nonce} (a use_dpop_nonce answer carries it) when not null.
   */
  public String proof(String method, String url, String accessToken, String nonce)
      throws GeneralSecurityException {
    byte[] jti = new byte[16];
    RANDOM.nextBytes(jti);
    Map<String, Object> payload = new LinkedHashMap<>();
    payload.put("jti", B64URL.encodeToString(jti));
    payload.put("htm", method);
    payload.put("htu", htuFor(url));
    payload.put("iat", Instant.now().getEpochSecond());
    if (accessToken != null) {
      payload.put("ath", B64URL.encodeToString(sha256(accessToken)));
    }
    if (nonce != null) {
      payload.put("nonce", nonce);
    }
    Map<String, Object> header = new LinkedHashMap<>();
    header.put("typ", "dpop+jwt");
    header.put("alg", "ES256");
    header.put("jwk", new Json.Raw(Json.object(publicJwk)));
    String signingInput = encode(Json.object(header)) + "." + encode(Json.object(payload));
    byte[] signature = sign(signingInput.getBytes(StandardCharsets.US_ASCII));
    return signingInput + "." + B64URL.encodeToString(signature);
  }

  /** The {@code Authorization: DPoP <token>} and {@code DPoP} headers of a resource request. */
  public Map<String, String> headers(String method, String url, String accessToken)
      throws GeneralSecurityException {
    return Map.of(
        "Authorization", "DPoP " + accessToken, "DPoP", proof(method, url, accessToken, null));
  }

  private byte[] sign(byte[] input) throws GeneralSecurityException {
    // RFC 7518 §3.4: the JWS signature is R || S, which the P1363 format gives (not DER).
    Signature signature = Signature.getInstance("SHA256withECDSAinP1363Format");
    signature.initSign(privateKey, RANDOM);
    signature.update(input);
    return signature.sign();
  }

  private static String encode(String json) {
    return B64URL.encodeToString(json.getBytes(StandardCharsets.UTF_8));
  }

  private static byte[] sha256(String text) {
    try {
      return MessageDigest.getInstance("SHA-256").digest(text.getBytes(StandardCharsets.UTF_8));
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("SHA-256 is part of every JDK", e);
    }
  }

  private static byte[] unsigned(BigInteger value) {
    byte[] raw = value.toByteArray();
    byte[] fixed = new byte[COORDINATE_BYTES];
    int length = Math.min(raw.length, COORDINATE_BYTES);
    System.arraycopy(raw, raw.length - length, fixed, COORDINATE_BYTES - length, length);
    return fixed;
  }

  private static BigInteger number(Map<String, String> jwk, String name) {
    String value = jwk.get(name);
    byte[] raw = value == null ? new byte[0] : B64URL_DECODER.decode(value);
    if (raw.length != COORDINATE_BYTES) {
      throw new IllegalArgumentException("JWK member " + name + " is not a P-256 value");
    }
    return new BigInteger(1, raw);
  }
}
