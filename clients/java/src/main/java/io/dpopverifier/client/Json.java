package io.dpopverifier.client;

import java.util.Map;

/** The little JSON this package writes: flat objects of strings and numbers. */
final class Json {
  private Json() {}

  /** {@code value} as a JSON string literal (RFC 8259 §7). */
  static String string(String value) {
    StringBuilder out = new StringBuilder(value.length() + 2).append('"');
    for (int i = 0; i < value.length(); i++) {
      char c = value.charAt(i);
      switch (c) {
        case '"' -> out.append("\\\"");
        case '\\' -> out.append("\\\\");
        default -> {
          if (c < 0x20) {
            out.append(String.format("\\u%04x", (int) c));
          } else {
            out.append(c);
          }
        }
      }
    }
    return out.append('"').toString();
  }

  /** An object of the entries in iteration order; values are strings, numbers or JSON text. */
  static String object(Map<String, ?> members) {
    StringBuilder out = new StringBuilder("{");
    for (Map.Entry<String, ?> member : members.entrySet()) {
      if (out.length() > 1) {
        out.append(',');
      }
      out.append(string(member.getKey())).append(':');
      Object value = member.getValue();
      if (value instanceof Raw raw) {
        out.append(raw.json());
      } else if (value instanceof Number number) {
        out.append(number);
      } else {
        out.append(string(String.valueOf(value)));
      }
    }
    return out.append('}').toString();
  }

  /** Already JSON text (a nested object). */
  record Raw(String json) {}
}
