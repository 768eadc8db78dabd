"""Every JWT authentication outcome, named and worded as Envoy's jwt_authn filter names it.

The names mirror Envoy's `JwtVerify::Status` (source/common/jwt/status.h) and the values are
the exact strings of `getStatusString`, which Envoy sends as the body of its 401/403 replies.
Logs, metric labels, responses and tests all use these names.
"""

from __future__ import annotations

import enum


class JwtStatus(enum.Enum):
    Ok = "OK"
    JwtMissed = "Jwt is missing"
    JwtNotYetValid = "Jwt not yet valid"
    JwtExpired = "Jwt is expired"
    JwtBadFormat = "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
    JwtHeaderParseErrorBadBase64 = "Jwt header is an invalid Base64url encoded"
    JwtHeaderParseErrorBadJson = "Jwt header is an invalid JSON"
    JwtHeaderBadAlg = "Jwt header [alg] field is required and must be a string"
    JwtHeaderNotImplementedAlg = "Jwt header [alg] is not supported"
    JwtHeaderBadKid = "Jwt header [kid] field is not a string"
    JwtPayloadParseErrorBadBase64 = "Jwt payload is an invalid Base64url encoded"
    JwtEd25519SignatureWrongLength = "Jwt ED25519 signature is wrong length"
    JwtPayloadParseErrorBadJson = "Jwt payload is an invalid JSON"
    JwtPayloadParseErrorIssNotString = "Jwt payload [iss] field is not a string"
    JwtPayloadParseErrorSubNotString = "Jwt payload [sub] field is not a string"
    JwtPayloadParseErrorIatNotInteger = "Jwt payload [iat] field is not an integer"
    JwtPayloadParseErrorIatOutOfRange = "Jwt payload [iat] field is not a positive 64 bit integer"
    JwtPayloadParseErrorNbfNotInteger = "Jwt payload [nbf] field is not an integer"
    JwtPayloadParseErrorNbfOutOfRange = "Jwt payload [nbf] field is not a positive 64 bit integer"
    JwtPayloadParseErrorExpNotInteger = "Jwt payload [exp] field is not an integer"
    JwtPayloadParseErrorExpOutOfRange = "Jwt payload [exp] field is not a positive 64 bit integer"
    JwtPayloadParseErrorJtiNotString = "Jwt payload [jti] field is not a string"
    JwtPayloadParseErrorAudNotString = "Jwt payload [aud] field is not a string or string list"
    JwtSignatureParseErrorBadBase64 = "Jwt signature is an invalid Base64url encoded"
    JwtUnknownIssuer = "Jwt issuer is not configured"
    JwtAudienceNotAllowed = "Audiences in Jwt are not allowed"
    JwtVerificationFail = "Jwt verification fails"
    JwtMultipleTokens = "Found multiple Jwt tokens"
    JwksNoValidKeys = "Jwks doesn't have any valid public key"
    JwksKidAlgMismatch = "Jwks doesn't have key to match kid or alg from Jwt"
    JwksFetchFail = "Jwks remote fetch is failed"

    @property
    def message(self) -> str:
        return self.value

    @property
    def http_status(self) -> int:
        # Envoy's jwt_authn answers 403 for a disallowed audience and 401 for everything else
        # (Filter::onComplete in source/extensions/filters/http/jwt_authn/filter.cc).
        return 403 if self is JwtStatus.JwtAudienceNotAllowed else 401
