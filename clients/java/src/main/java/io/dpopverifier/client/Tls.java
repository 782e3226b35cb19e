package io.dpopverifier.client;

import io.grpc.ChannelCredentials;
import io.grpc.TlsChannelCredentials;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Optional;

/**
 * How to reach a verifier that serves TLS ({@code DPOP_TLS_CERT_FILE}): the CA that signed its
 * certificate (none: the system roots), this client's certificate and key when the server requires
 * mTLS ({@code DPOP_TLS_CLIENT_CA_FILE}), and the name checked against the server certificate
 * instead of the target's host.
 *
 * <pre>
 * Tls.builder().caFile(Path.of("ca.pem")).clientCertificate(cert, key).serverName("verifier").build()
 * </pre>
 */
public final class Tls {
  private final Path caFile;
  private final Path certFile;
  private final Path keyFile;
  private final String serverName;

  private Tls(Builder builder) {
    this.caFile = builder.caFile;
    this.certFile = builder.certFile;
    this.keyFile = builder.keyFile;
    this.serverName = builder.serverName;
  }

  /** TLS trusting the system roots, no client certificate. */
  public static Tls systemRoots() {
    return builder().build();
  }

  public static Builder builder() {
    return new Builder();
  }

  /** The name that replaces the target's host in the certificate check, if one was set. */
  public Optional<String> serverName() {
    return Optional.ofNullable(serverName);
  }

  ChannelCredentials credentials() throws IOException {
    TlsChannelCredentials.Builder builder = TlsChannelCredentials.newBuilder();
    if (caFile != null) {
      builder.trustManager(caFile.toFile());
    }
    if (certFile != null) {
      builder.keyManager(certFile.toFile(), keyFile.toFile());
    }
    return builder.build();
  }

  /** Builds a {@link Tls}. */
  public static final class Builder {
    private Path caFile;
    private Path certFile;
    private Path keyFile;
    private String serverName;

    private Builder() {}

    /** The PEM bundle of the CA that signed the server certificate. */
    public Builder caFile(Path caFile) {
      this.caFile = caFile;
      return this;
    }

    /** This client's PEM certificate chain and PKCS#8 PEM key, for mTLS. */
    public Builder clientCertificate(Path certFile, Path keyFile) {
      this.certFile = certFile;
      this.keyFile = keyFile;
      return this;
    }

    /** The name checked against the server certificate instead of the target's host. */
    public Builder serverName(String serverName) {
      this.serverName = serverName;
      return this;
    }

    public Tls build() {
      return new Tls(this);
    }
  }
}
