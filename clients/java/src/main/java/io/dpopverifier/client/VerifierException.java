package io.dpopverifier.client;

import io.grpc.Status;

/**
 * The verifier gave no answer: the call failed (after any retries). Treat it as a deny. {@link
 * #code()} is the gRPC status of the last attempt ({@code UNAVAILABLE}, {@code
 * DEADLINE_EXCEEDED}, ...), {@link #attempts()} how many attempts were made.
 */
public final class VerifierException extends Exception {
  private static final long serialVersionUID = 1L;

  private final Status.Code code;
  private final int attempts;

  VerifierException(Status status, int attempts, Throwable cause) {
    super(
        "verifier call failed: "
            + status.getCode()
            + ": "
            + status.getDescription()
            + " (attempts: "
            + attempts
            + ")",
        cause);
    this.code = status.getCode();
    this.attempts = attempts;
  }

  public Status.Code code() {
    return code;
  }

  public int attempts() {
    return attempts;
  }
}
