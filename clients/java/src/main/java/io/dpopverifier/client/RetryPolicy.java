package io.dpopverifier.client;

import io.grpc.Status;
import java.time.Duration;
import java.util.EnumSet;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Which failed calls are tried again. Only failures whose status is in {@code codes} are retried
 * (by default only {@code UNAVAILABLE}: the verifier could not be reached or was restarting). A
 * deny is an answer, never a failure, so it is never retried. Waits grow from {@code
 * initialBackoff} by {@code multiplier} up to {@code maxBackoff}, with +/-20% jitter, and never
 * run past the call's deadline. {@code maxAttempts} counts the first try.
 *
 * <p>A retry can repeat a request the verifier already accepted when only the answer was lost;
 * the repeated proof is then denied as {@code replayed}, which fails closed.
 */
public record RetryPolicy(
    int maxAttempts,
    Duration initialBackoff,
    Duration maxBackoff,
    double multiplier,
    Set<Status.Code> codes) {

  /** 3 attempts, 50 ms doubling to 500 ms, {@code UNAVAILABLE} only. */
  public static final RetryPolicy DEFAULT =
      new RetryPolicy(
          3, Duration.ofMillis(50), Duration.ofMillis(500), 2, EnumSet.of(Status.Code.UNAVAILABLE));

  /** Never retries. */
  public static final RetryPolicy NONE =
      new RetryPolicy(1, Duration.ZERO, Duration.ZERO, 1, EnumSet.noneOf(Status.Code.class));

  public RetryPolicy {
    if (maxAttempts < 1) {
      throw new IllegalArgumentException("maxAttempts must be at least 1");
    }
    if (initialBackoff.isNegative() || maxBackoff.isNegative() || multiplier < 1) {
      throw new IllegalArgumentException("backoffs must be >= 0 and multiplier >= 1");
    }
    codes = Set.copyOf(codes);
  }

  /** The wait after failed attempt number {@code attempt} (1-based). */
  Duration delay(int attempt) {
    double base = initialBackoff.toNanos() * Math.pow(multiplier, attempt - 1);
    double capped = Math.min(base, maxBackoff.toNanos());
    double jitter = 0.8 + 0.4 * ThreadLocalRandom.current().nextDouble(); // not a secret
    return Duration.ofNanos((long) (capped * jitter));
  }
}
