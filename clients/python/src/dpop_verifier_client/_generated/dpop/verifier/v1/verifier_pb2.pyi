from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_ALLOW: _ClassVar[Decision]
    DECISION_DENY: _ClassVar[Decision]

class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REASON_UNSPECIFIED: _ClassVar[Reason]
    REASON_OK: _ClassVar[Reason]
    REASON_AUTHORIZATION_MISSING: _ClassVar[Reason]
    REASON_AUTHORIZATION_MULTIPLE: _ClassVar[Reason]
    REASON_AUTHORIZATION_MALFORMED: _ClassVar[Reason]
    REASON_AUTHORIZATION_SCHEME_UNSUPPORTED: _ClassVar[Reason]
    REASON_BEARER_NOT_ALLOWED: _ClassVar[Reason]
    REASON_TOKEN_BOUND_SENT_AS_BEARER: _ClassVar[Reason]
    REASON_PROOF_MISSING: _ClassVar[Reason]
    REASON_PROOF_MULTIPLE: _ClassVar[Reason]
    REASON_PROOF_TOO_LARGE: _ClassVar[Reason]
    REASON_PROOF_MALFORMED: _ClassVar[Reason]
    REASON_PROOF_TYP_INVALID: _ClassVar[Reason]
    REASON_PROOF_ALG_NOT_ALLOWED: _ClassVar[Reason]
    REASON_PROOF_CRIT_UNSUPPORTED: _ClassVar[Reason]
    REASON_PROOF_JWK_MISSING: _ClassVar[Reason]
    REASON_PROOF_JWK_PRIVATE: _ClassVar[Reason]
    REASON_PROOF_JWK_INVALID: _ClassVar[Reason]
    REASON_PROOF_SIGNATURE_INVALID: _ClassVar[Reason]
    REASON_PROOF_CLAIMS_INVALID: _ClassVar[Reason]
    REASON_PROOF_JTI_INVALID: _ClassVar[Reason]
    REASON_PROOF_HTM_MISMATCH: _ClassVar[Reason]
    REASON_PROOF_HTU_MISMATCH: _ClassVar[Reason]
    REASON_PROOF_IAT_INVALID: _ClassVar[Reason]
    REASON_PROOF_IAT_TOO_OLD: _ClassVar[Reason]
    REASON_PROOF_IAT_IN_FUTURE: _ClassVar[Reason]
    REASON_PROOF_ATH_MISSING: _ClassVar[Reason]
    REASON_PROOF_ATH_MISMATCH: _ClassVar[Reason]
    REASON_NONCE_REQUIRED: _ClassVar[Reason]
    REASON_NONCE_INVALID: _ClassVar[Reason]
    REASON_NONCE_EXPIRED: _ClassVar[Reason]
    REASON_REPLAYED: _ClassVar[Reason]
    REASON_TOKEN_TOO_LARGE: _ClassVar[Reason]
    REASON_TOKEN_MALFORMED: _ClassVar[Reason]
    REASON_TOKEN_ALG_NOT_ALLOWED: _ClassVar[Reason]
    REASON_TOKEN_ISSUER_UNKNOWN: _ClassVar[Reason]
    REASON_TOKEN_KEY_UNKNOWN: _ClassVar[Reason]
    REASON_TOKEN_SIGNATURE_INVALID: _ClassVar[Reason]
    REASON_TOKEN_EXPIRED: _ClassVar[Reason]
    REASON_TOKEN_NOT_YET_VALID: _ClassVar[Reason]
    REASON_TOKEN_AUDIENCE_INVALID: _ClassVar[Reason]
    REASON_TOKEN_CLAIMS_INVALID: _ClassVar[Reason]
    REASON_TOKEN_NOT_BOUND: _ClassVar[Reason]
    REASON_JKT_MISMATCH: _ClassVar[Reason]
    REASON_KEY_SOURCE_UNAVAILABLE: _ClassVar[Reason]
    REASON_REPLAY_STORE_UNAVAILABLE: _ClassVar[Reason]
    REASON_INTERNAL_ERROR: _ClassVar[Reason]
    REASON_REQUEST_INVALID: _ClassVar[Reason]
    REASON_TOKEN_INACTIVE: _ClassVar[Reason]
    REASON_INTROSPECTION_UNAVAILABLE: _ClassVar[Reason]
    REASON_CLIENT_CERTIFICATE_MISSING: _ClassVar[Reason]
    REASON_CLIENT_CERTIFICATE_INVALID: _ClassVar[Reason]
    REASON_CLIENT_CERTIFICATE_MISMATCH: _ClassVar[Reason]
    REASON_CLIENT_CERTIFICATE_UNTRUSTED: _ClassVar[Reason]
    REASON_TOKEN_NOT_CERTIFICATE_BOUND: _ClassVar[Reason]
    REASON_TOKEN_NOT_SENDER_CONSTRAINED: _ClassVar[Reason]
    REASON_TOKEN_IN_QUERY: _ClassVar[Reason]
    REASON_TOKEN_ISSUER_NOT_ALLOWED: _ClassVar[Reason]
DECISION_UNSPECIFIED: Decision
DECISION_ALLOW: Decision
DECISION_DENY: Decision
REASON_UNSPECIFIED: Reason
REASON_OK: Reason
REASON_AUTHORIZATION_MISSING: Reason
REASON_AUTHORIZATION_MULTIPLE: Reason
REASON_AUTHORIZATION_MALFORMED: Reason
REASON_AUTHORIZATION_SCHEME_UNSUPPORTED: Reason
REASON_BEARER_NOT_ALLOWED: Reason
REASON_TOKEN_BOUND_SENT_AS_BEARER: Reason
REASON_PROOF_MISSING: Reason
REASON_PROOF_MULTIPLE: Reason
REASON_PROOF_TOO_LARGE: Reason
REASON_PROOF_MALFORMED: Reason
REASON_PROOF_TYP_INVALID: Reason
REASON_PROOF_ALG_NOT_ALLOWED: Reason
REASON_PROOF_CRIT_UNSUPPORTED: Reason
REASON_PROOF_JWK_MISSING: Reason
REASON_PROOF_JWK_PRIVATE: Reason
REASON_PROOF_JWK_INVALID: Reason
REASON_PROOF_SIGNATURE_INVALID: Reason
REASON_PROOF_CLAIMS_INVALID: Reason
REASON_PROOF_JTI_INVALID: Reason
REASON_PROOF_HTM_MISMATCH: Reason
REASON_PROOF_HTU_MISMATCH: Reason
REASON_PROOF_IAT_INVALID: Reason
REASON_PROOF_IAT_TOO_OLD: Reason
REASON_PROOF_IAT_IN_FUTURE: Reason
REASON_PROOF_ATH_MISSING: Reason
REASON_PROOF_ATH_MISMATCH: Reason
REASON_NONCE_REQUIRED: Reason
REASON_NONCE_INVALID: Reason
REASON_NONCE_EXPIRED: Reason
REASON_REPLAYED: Reason
REASON_TOKEN_TOO_LARGE: Reason
REASON_TOKEN_MALFORMED: Reason
REASON_TOKEN_ALG_NOT_ALLOWED: Reason
REASON_TOKEN_ISSUER_UNKNOWN: Reason
REASON_TOKEN_KEY_UNKNOWN: Reason
REASON_TOKEN_SIGNATURE_INVALID: Reason
REASON_TOKEN_EXPIRED: Reason
REASON_TOKEN_NOT_YET_VALID: Reason
REASON_TOKEN_AUDIENCE_INVALID: Reason
REASON_TOKEN_CLAIMS_INVALID: Reason
REASON_TOKEN_NOT_BOUND: Reason
REASON_JKT_MISMATCH: Reason
REASON_KEY_SOURCE_UNAVAILABLE: Reason
REASON_REPLAY_STORE_UNAVAILABLE: Reason
REASON_INTERNAL_ERROR: Reason
REASON_REQUEST_INVALID: Reason
REASON_TOKEN_INACTIVE: Reason
REASON_INTROSPECTION_UNAVAILABLE: Reason
REASON_CLIENT_CERTIFICATE_MISSING: Reason
REASON_CLIENT_CERTIFICATE_INVALID: Reason
REASON_CLIENT_CERTIFICATE_MISMATCH: Reason
REASON_CLIENT_CERTIFICATE_UNTRUSTED: Reason
REASON_TOKEN_NOT_CERTIFICATE_BOUND: Reason
REASON_TOKEN_NOT_SENDER_CONSTRAINED: Reason
REASON_TOKEN_IN_QUERY: Reason
REASON_TOKEN_ISSUER_NOT_ALLOWED: Reason

class VerifyRequest(_message.Message):
    __slots__ = ("method", "target_uri", "scheme", "authority", "path", "authorization", "dpop", "proof_only", "client_address", "route", "explain", "client_certificate")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    TARGET_URI_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    AUTHORITY_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    DPOP_FIELD_NUMBER: _ClassVar[int]
    PROOF_ONLY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    method: str
    target_uri: str
    scheme: str
    authority: str
    path: str
    authorization: _containers.RepeatedScalarFieldContainer[str]
    dpop: _containers.RepeatedScalarFieldContainer[str]
    proof_only: bool
    client_address: str
    route: str
    explain: bool
    client_certificate: bytes
    def __init__(self, method: _Optional[str] = ..., target_uri: _Optional[str] = ..., scheme: _Optional[str] = ..., authority: _Optional[str] = ..., path: _Optional[str] = ..., authorization: _Optional[_Iterable[str]] = ..., dpop: _Optional[_Iterable[str]] = ..., proof_only: _Optional[bool] = ..., client_address: _Optional[str] = ..., route: _Optional[str] = ..., explain: _Optional[bool] = ..., client_certificate: _Optional[bytes] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("decision", "reason", "reason_code", "message", "rfc_error", "http_status", "www_authenticate", "dpop_nonce", "enforced", "jkt", "jti", "alg", "claims", "checks")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RFC_ERROR_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    WWW_AUTHENTICATE_FIELD_NUMBER: _ClassVar[int]
    DPOP_NONCE_FIELD_NUMBER: _ClassVar[int]
    ENFORCED_FIELD_NUMBER: _ClassVar[int]
    JKT_FIELD_NUMBER: _ClassVar[int]
    JTI_FIELD_NUMBER: _ClassVar[int]
    ALG_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    reason: Reason
    reason_code: str
    message: str
    rfc_error: str
    http_status: int
    www_authenticate: str
    dpop_nonce: str
    enforced: bool
    jkt: str
    jti: str
    alg: str
    claims: TokenClaims
    checks: _containers.RepeatedCompositeFieldContainer[CheckResult]
    def __init__(self, decision: _Optional[_Union[Decision, str]] = ..., reason: _Optional[_Union[Reason, str]] = ..., reason_code: _Optional[str] = ..., message: _Optional[str] = ..., rfc_error: _Optional[str] = ..., http_status: _Optional[int] = ..., www_authenticate: _Optional[str] = ..., dpop_nonce: _Optional[str] = ..., enforced: _Optional[bool] = ..., jkt: _Optional[str] = ..., jti: _Optional[str] = ..., alg: _Optional[str] = ..., claims: _Optional[_Union[TokenClaims, _Mapping]] = ..., checks: _Optional[_Iterable[_Union[CheckResult, _Mapping]]] = ...) -> None: ...

class TokenClaims(_message.Message):
    __slots__ = ("iss", "sub", "client_id", "scope", "exp")
    ISS_FIELD_NUMBER: _ClassVar[int]
    SUB_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    EXP_FIELD_NUMBER: _ClassVar[int]
    iss: str
    sub: str
    client_id: str
    scope: str
    exp: int
    def __init__(self, iss: _Optional[str] = ..., sub: _Optional[str] = ..., client_id: _Optional[str] = ..., scope: _Optional[str] = ..., exp: _Optional[int] = ...) -> None: ...

class CheckResult(_message.Message):
    __slots__ = ("name", "passed", "note")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    name: str
    passed: bool
    note: str
    def __init__(self, name: _Optional[str] = ..., passed: _Optional[bool] = ..., note: _Optional[str] = ...) -> None: ...
