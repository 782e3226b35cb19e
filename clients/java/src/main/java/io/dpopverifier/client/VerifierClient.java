package io.dpopverifier.client;

import io.dpopverifier.v1.Decision;
import io.dpopverifier.v1.VerifierServiceGrpc;
import io.dpopverifier.v1.VerifyRequest;
import io.dpopverifier.v1.VerifyResponse;
import io.grpc.ChannelCredentials;
import io.grpc.Deadline;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.TimeUnit;

/**
 * Calls {@code dpop.verifier.v1.VerifierService/Verify} on one verifier address.
 *
 * <pre>
 * VerifierClient verifier = VerifierClient.builder("verifier.internal:50051")
 *     .tls(Tls.builder().caFile(Path.of("ca.pem")).build())
 *     .build();
 * VerifyResponse answer = verifier.verify(VerifyRequests.fromServlet(request, options));
 * if (!VerifierClient.isAllowed(answer)) { ... } // answer.getHttpStatus(), responseHeaders(answer)
 * </pre>
 *
 * <p>Choose the transport explicitly: {@code tls(...)} or {@code insecure()} for plaintext on
 * loopback or inside an mTLS mesh. The default deadline of one call is {@link #DEFAULT_TIMEOUT},
 * retries included; {@link RetryPolicy#DEFAULT} retries {@code UNAVAILABLE} only. Thread-safe:
 * make one client for the life of the process and {@link #close()} it at the end.
 */
public final class VerifierClient implements AutoCloseable {
  /** The deadline of one {@link #verify} call, retries included. */
  public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(2);

  private final ManagedChannel channel;
  private final VerifierServiceGrpc.VerifierServiceBlockingStub stub;
  private final Duration timeout;
  private final RetryPolicy retry;

  private VerifierClient(Builder builder) {
    if ((builder.tls == null) == !builder.insecure) {
      throw new IllegalStateException("choose exactly one of tls(...) or insecure()");
    }
    ChannelCredentials credentials;
    try {
      credentials =
          builder.tls != null ? builder.tls.credentials() : InsecureChannelCredentials.create();
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read the TLS files", e);
    }
    ManagedChannelBuilder<?> channelBuilder = Grpc.newChannelBuilder(builder.target, credentials);
    if (builder.tls != null) {
      builder.tls.serverName().ifPresent(channelBuilder::overrideAuthority);
    }
    this.channel = channelBuilder.build();
    this.stub = VerifierServiceGrpc.newBlockingStub(channel);
    this.timeout = builder.timeout;
    this.retry = builder.retry;
  }

  /** A builder for a client of {@code target} ({@code host:port}, {@code dns:///name:port}). */
  public static Builder builder(String target) {
    return new Builder(target);
  }

  /** True only for {@code DECISION_ALLOW}; an unspecified or unknown decision is a deny. */
  public static boolean isAllowed(VerifyResponse answer) {
    return answer.getDecision() == Decision.DECISION_ALLOW;
  }

  /**
   * The headers to send back: {@code WWW-Authenticate} on a deny and {@code DPoP-Nonce} when the
   * verifier issued a nonce (either may be absent).
   */
  public static Map<String, String> responseHeaders(VerifyResponse answer) {
    Map<String, String> headers = new LinkedHashMap<>();
    if (!answer.getWwwAuthenticate().isEmpty()) {
      headers.put("WWW-Authenticate", answer.getWwwAuthenticate());
    }
    if (!answer.getDpopNonce().isEmpty()) {
      headers.put("DPoP-Nonce", answer.getDpopNonce());
    }
    return headers;
  }

  /** {@link #verify(VerifyRequest, Duration)} with the client's timeout. */
  public VerifyResponse verify(VerifyRequest request) throws VerifierException {
    return verify(request, timeout);
  }

  /**
   * The verifier's answer for {@code request}: allow, or deny with a reason (a deny is a normal
   * answer). Throws {@link VerifierException} when no answer came within {@code timeout}, retries
   * included; the caller must then deny the request.
   */
  public VerifyResponse verify(VerifyRequest request, Duration timeout) throws VerifierException {
    long deadline = System.nanoTime() + timeout.toNanos();
    for (int attempt = 1; ; attempt++) {
      long left = deadline - System.nanoTime();
      if (left <= 0) {
        Status expired = Status.DEADLINE_EXCEEDED.withDescription("no time left");
        throw new VerifierException(expired, attempt - 1, null);
      }
      try {
        return stub.withDeadline(Deadline.after(left, TimeUnit.NANOSECONDS)).verify(request);
      } catch (StatusRuntimeException e) {
        Status status = e.getStatus();
        long delay = retry.delay(attempt).toNanos();
        boolean again =
            retry.codes().contains(status.getCode())
                && attempt < retry.maxAttempts()
                && System.nanoTime() + delay < deadline;
        if (!again) {
          throw new VerifierException(status, attempt, e);
        }
        sleep(delay, status, attempt, e);
      }
    }
  }

  private static void sleep(long nanos, Status status, int attempt, Throwable cause)
      throws VerifierException {
    try {
      TimeUnit.NANOSECONDS.sleep(nanos);
    } catch (InterruptedException interrupted) {
      Thread.currentThread().interrupt();
      throw new VerifierException(Status.CANCELLED.withCause(interrupted), attempt, cause);
    }
  }

  /** Closes the channel; calls in flight are cancelled. */
  @Override
  public void close() {
    channel.shutdownNow();
    try {
      channel.awaitTermination(5, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** Builds a {@link VerifierClient}. */
  public static final class Builder {
    private final String target;
    private Tls tls;
    private boolean insecure;
    private Duration timeout = DEFAULT_TIMEOUT;
    private RetryPolicy retry = RetryPolicy.DEFAULT;

    private Builder(String target) {
      this.target = Objects.requireNonNull(target, "target");
    }

    /** Connect with TLS ({@link Tls#systemRoots()}, or a private CA and mTLS). */
    public Builder tls(Tls tls) {
      this.tls = Objects.requireNonNull(tls, "tls");
      return this;
    }

    /** Connect in plaintext: only on loopback or inside an mTLS mesh. */
    public Builder insecure() {
      this.insecure = true;
      return this;
    }

    /** The default deadline of one call, retries included. */
    public Builder timeout(Duration timeout) {
      this.timeout = Objects.requireNonNull(timeout, "timeout");
      return this;
    }

    public Builder retry(RetryPolicy retry) {
      this.retry = Objects.requireNonNull(retry, "retry");
      return this;
    }

    public VerifierClient build() {
      return new VerifierClient(this);
    }
  }
}
